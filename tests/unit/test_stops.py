"""tmplc.stops: reading the next message's code from the current loop iteration."""

import pytest

from tmplc.render import render
from tmplc.stops import _assigned, _Unreadable, for_next
from tmplc.syntax import parse


def _expr(src: str):
    """The tokens of the single ``{{ }}`` output of ``src``."""
    return parse(src).body[0].toks


READABLE = [
    ("{{ m.role == 'user' }}", "loop.nextitem.role == 'user'", "loop-variable"),
    ("{{ messages[loop.index0 - 1].role }}", "messages[(loop.index0 + 1) - 1].role", "loop-index"),
    ("{{ loop.first or x }}", "false or x", "loop-first-is-false-next"),
    ("{{ loop.previtem.role }}", "m.role", "previtem-is-the-current-item"),
    ("{{ ns.in_assistant }}", "ns.in_assistant", "namespace-attribute-not-stale"),
    ("{{ m.content.role }}", "loop.nextitem.content.role", "attribute-named-like-a-local"),
]


@pytest.mark.parametrize("src, expected", [r[:2] for r in READABLE], ids=[r[2] for r in READABLE])
def test_for_next(src, expected):
    assert for_next(_expr(src)[1:-1], "m", {"role", "content_text"}, {"ns.other"}) == expected


UNREADABLE = [
    ("{{ content_text }}", "name-set-inside-the-loop"),
    ("{{ ns.other }}", "stale-namespace-attribute"),
    ("{{ loop.cycle('a', 'b') }}", "unknown-loop-attribute"),
]


@pytest.mark.parametrize("src", [r[0] for r in UNREADABLE], ids=[r[1] for r in UNREADABLE])
def test_for_next_unreadable(src):
    with pytest.raises(_Unreadable):
        for_next(_expr(src)[1:-1], "m", {"content_text"}, {"ns.other"})


def test_for_next_evaluates_like_the_next_iteration():
    """What the rewritten expression gives in iteration i is what the original gives in i + 1."""
    messages = [{"role": "user"}, {"role": "assistant"}, {"role": "tool"}, {"role": "user"}]
    original = "{{ m.role }}:{{ loop.index }}:{{ loop.last }}:{{ messages[loop.index0 - 1].role }}"
    exprs = [for_next(o.toks[1:-1], "m", set()) for o in parse(original).body if hasattr(o, "toks")]
    now = render("{% for m in messages %}{{ m.role }}:{{ loop.index }}:{{ loop.last }}:"
                 "{{ messages[loop.index0 - 1].role }}|{% endfor %}", messages)[0].split("|")[1:-1]
    ahead = render("{% for m in messages %}{% if loop.nextitem is defined %}{{ " + " }}:{{ ".join(exprs)
                   + " }}|{% endif %}{% endfor %}", messages)[0].split("|")[:-1]
    assert ahead == now


def test_assigned_names_and_namespace_attributes():
    src = ("{% set ns = namespace(a=1) %}{% for m in messages %}{% set x = m.content %}{% set ns.a = 2 %}"
           "{% for k, v in m.items() %}{% endfor %}{% endfor %}{% set y = 3 %}")
    tree = parse(src)
    loop = tree.body[1]
    names, attrs = _assigned(tree, loop)
    assert names == {"x", "k", "v"}  # not `m.content`'s names, not the namespace, not `y` outside the loop
    assert list(attrs) == ["ns.a"] and src[attrs["ns.a"][0]:].startswith("{% set ns.a")
