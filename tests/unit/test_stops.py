"""tmplc.stops: reading the next message's code from the current loop iteration."""

import re

import pytest

from tmplc.render import render
from tmplc.stops import _Ahead, _assigned, _guards, _marker_text, _Unreadable, for_next
from tmplc.syntax import Output, parse
from tmplc.trace import sites


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


# A message loop with silent iterations (tool messages write nothing), names set inside the loop
# and a namespace attribute every iteration sets at its end: DiffusionGemma's shape.
SILENT = ("{% set ns = namespace(prev=none) %}{% for m in messages %}#{% if m.role != 'tool' %}"
          "{% set r = 'model' if m.role == 'assistant' else m.role %}"
          "{% set cont = r == 'model' and ns.prev == 'assistant' %}"
          "{% if not cont %}{{ '[' + r + ']' }}{% endif %}{{ m.content }}{% endif %}"
          "{% set ns.prev = m.role %}{% endfor %}")


def _silent_parts():
    tree = parse(SILENT)
    loop = tree.body[1]
    site = next(s for s in sites(tree) if isinstance(s.node, Output) and "'['" in s.node.code(SILENT))
    gate = next(n for n in loop.clauses[0].body if getattr(n, "name", "") == "if")
    return tree, loop, site, gate


@pytest.mark.parametrize("roles", [
    ["user", "assistant", "tool", "assistant", "user"],
    ["user", "assistant", "tool", "tool", "assistant", "assistant", "tool", "user", "assistant"],
    ["assistant", "tool", "user", "tool", "assistant"],
], ids=["one-tool", "two-tools-then-continuation", "tool-after-user"])
def test_read_ahead_writes_the_marker_of_the_next_writing_message(roles):
    """At the end of iteration i, the scan writes what the first later message that writes
    anything writes as its marker (names set inside the loop read as their definitions, the
    attribute set at the end of every iteration read for the previous message)."""
    tree, loop, site, gate = _silent_parts()
    ahead = _Ahead(tree, loop)
    test = ahead.read(gate.clauses[0].tag.toks[2:], gate.start)
    cond = " and ".join(_guards(site, loop, ahead.read))
    scan = ahead.scan(test, cond, "tmplc_stop.m0", _marker_text(site, None, ahead.read))
    messages = [{"role": r, "content": f"c{k}"} for k, r in enumerate(roles)]
    at = SILENT.index("{% endif %}{% set ns.prev")
    variant = SILENT[:at] + "|" + scan + "|" + SILENT[at:]
    written = render("{% set tmplc_stop = namespace(m0=false) %}" + variant, messages)[0]
    scans = dict(re.findall(r"c(\d+)\|(.*?)\|", written))
    original = render(SILENT, messages)[0]
    markers = {k: f"[{r}]" if r else "" for r, k in re.findall(r"#(?:\[(\w+)\])?c(\d+)", original)}
    for i, r in enumerate(roles):
        if r == "tool":
            continue
        later = next((j for j in range(i + 1, len(roles)) if roles[j] != "tool"), None)
        assert scans[str(i)] == ("" if later is None else markers[str(later)]), (i, written)


UNREADABLE_AHEAD = [
    ("{% for m in messages if m.role != 'system' %}{{ m.content }}{% endfor %}", "filtered-loop"),
    ("{% for m in messages %}{% for t in m.tool_calls %}{% set x = t %}{% endfor %}{{ x }}{% endfor %}",
     "name-set-in-an-inner-loop"),
    ("{% for m in messages %}{% if m.a %}{% set x = 1 %}{% endif %}{{ x }}{% endfor %}", "set-in-another-clause"),
    ("{% set ns = namespace(p=0) %}{% for m in messages %}{% if m.a %}{% set ns.p = 1 %}{% endif %}"
     "{{ ns.p }}{% endfor %}", "conditional-namespace-attribute"),
    ("{% for m in messages %}{{ loop.index0 }}{% endfor %}", "loop-index-of-a-later-item"),
    ("{% for m in messages %}{% set n = namespace(p=0) %}{{ n.p }}{% set n.p = 1 %}{% endfor %}",
     "namespace-made-in-every-iteration"),
]


@pytest.mark.parametrize("src", [r[0] for r in UNREADABLE_AHEAD], ids=[r[1] for r in UNREADABLE_AHEAD])
def test_read_ahead_unreadable(src):
    """What the scan cannot read for a later item stays where the plan put it (the move is skipped)."""
    tree = parse(src)
    loop = next(n for n in tree.body if getattr(n, "name", "") == "for")
    out = next(n for n, _ in tree.walk() if isinstance(n, Output))
    with pytest.raises(_Unreadable):
        _Ahead(tree, loop).read(out.toks, out.start)
