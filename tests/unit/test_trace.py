"""tmplc.trace: reading trace marks, loop variables, and instrumented renders."""

import re

import jinja2
import pytest

from tmplc.render import TRACE_CLOSE, TRACE_OPEN, compile_template, environment, render
from tmplc.syntax import Block, Output, Text, parse
from tmplc.trace import Atom, Instrumented, Site, TraceError, instrument, loop_var, read_trace, sites

X = Atom(-1, "x", "x")
Y = Atom(-1, "y", "y")


def o(sid: int, *atoms: int) -> str:
    """The start mark of site ``sid`` with atom values."""
    return TRACE_OPEN + ",".join([str(sid), "0", *map(str, atoms)]) + TRACE_CLOSE


def c(sid: int) -> str:
    return TRACE_OPEN + f"{sid},1" + TRACE_CLOSE


def fake(virtual_start: int | None = None) -> Instrumented:
    """Three sites: 0 without atoms, 1 and 2 with atoms x, y."""
    node = Text(0, 1, "A")
    ss = [Site(0, node, (), (), ()), Site(1, node, (), (), (X, Y)), Site(2, node, (), (), (X, Y))]
    return Instrumented(parse("A"), ss, "A", virtual_start)


READ = [
    (None, o(0) + "ab" + c(0), "ab", [(0, 0, 2, {})], "one-node"),
    (None, o(0) + "ab" + c(0) + o(1, 1, 0) + "cd" + c(1), "abcd",
     [(0, 0, 2, {}), (1, 2, 4, {X: True, Y: False})], "two-nodes-with-atoms"),
    (None, o(0) + "a" + o(1, 0, 1) + "b" + c(1) + "c" + c(0), "abc",
     [(1, 1, 2, {X: False, Y: True}), (0, 0, 3, {})], "nested-inner-closes-first"),
    (None, o(0) + c(0) + o(1, 0, 0) + "x" + c(1), "x", [(1, 0, 1, {X: False, Y: False})], "empty-emission-dropped"),
    (None, o(1, 1, 0) + "a" + c(1) + o(1, 0, 1) + "b" + c(1), "ab",
     [(1, 0, 1, {X: True, Y: False}), (1, 1, 2, {X: False, Y: True})], "same-node-twice-in-a-loop"),
    (0, "ab" + c(0) + o(1, 1, 1) + "c" + c(1), "abc",
     [(0, 0, 2, {}), (1, 2, 3, {X: True, Y: True})], "virtual-start-for-text-at-offset-0"),
    (None, "", "", [], "empty-rendering"),
    (None, o(0) + "é😀\n" + c(0), "é😀\n", [(0, 0, 3, {})], "offsets-in-characters"),
]


@pytest.mark.parametrize("virtual, raw, text, emissions", [r[:4] for r in READ], ids=[r[4] for r in READ])
def test_read_trace(virtual, raw, text, emissions):
    trace = read_trace(fake(virtual), raw)
    assert trace.text == text
    assert [(e.site, e.start, e.end, e.atoms) for e in trace.emissions] == emissions


BAD = [
    (o(0) + "a" + c(1), "unbalanced trace marks at node 1", "closes-another-node"),
    (c(0), "unbalanced trace marks at node 0", "close-without-open"),
    (o(0) + "a", "unclosed trace marks", "open-without-close"),
    ("x" + o(0) + "a" + c(0), "outside any traced node", "text-before-any-node"),
    (o(0) + "a" + c(0) + "z", "outside any traced node", "text-after-every-node"),
    (o(0) + o(1, 0, 0) + c(0) + c(1), "unbalanced", "crossed-marks"),
]


@pytest.mark.parametrize("raw, message", [r[:2] for r in BAD], ids=[r[2] for r in BAD])
def test_read_trace_errors(raw, message):
    with pytest.raises(TraceError, match=message):
        read_trace(fake(), raw)


def test_read_trace_truncated_mark_is_a_trace_error():
    with pytest.raises(TraceError):
        read_trace(fake(), o(0) + "a" + TRACE_OPEN + "0,1")


# --- loop_var ------------------------------------------------------------------------------------

LOOP_VAR = [
    ("{% for m in messages %}{% endfor %}", "m", "simple"),
    ("{%- for message in messages -%}{%- endfor -%}", "message", "dash-delimiters"),
    ("{% for m in messages if m.role != 'system' %}{% endfor %}", "m", "filtered-loop"),
    ("{% for m in messages[1:] %}{% endfor %}", "m", "sliced"),
    ("{% for k, v in d.items() %}{% endfor %}", None, "tuple-target"),
    ("{% for (a, b) in x %}{% endfor %}", None, "parenthesised-tuple-target"),
    ("{% for m in messages recursive %}{% endfor %}", None, "recursive"),
]


@pytest.mark.parametrize("src, expected", [r[:2] for r in LOOP_VAR], ids=[r[2] for r in LOOP_VAR])
def test_loop_var(src, expected):
    block = parse(src).body[0]
    assert isinstance(block, Block)
    assert loop_var(block) == expected


# --- sites ---------------------------------------------------------------------------------------

SITES = [
    ("A{{ x }}B", ["A", "{{ x }}", "B"], "top-level-leaves"),
    ("{% macro f() %}X{% endmacro %}{{ f() }}", ["{{ f() }}"], "not-inside-macro"),
    ("{% set s %}X{% endset %}{{ s }}", ["{{ s }}"], "not-inside-set-block"),
    ("{% call f() %}X{% endcall %}", ["{% call f() %}X{% endcall %}"], "call-block-is-one-opaque-site"),
    ("{% filter upper %}x{% endfilter %}", ["{% filter upper %}x{% endfilter %}"], "filter-block-is-one-opaque-site"),
    ("{% if x %}A{% else %}B{% endif %}", ["A", "B"], "inside-if-branches"),
    ("{% for m in messages recursive %}A{% endfor %}", [], "not-inside-recursive-loop"),
    ("{% raw %}{{ r }}{% endraw %}", ["{% raw %}{{ r }}{% endraw %}"], "raw-block"),
    ("{# c #}{% set y = 1 %}", [], "comments-and-statements-are-not-sites"),
]


@pytest.mark.parametrize("src, expected", [r[:2] for r in SITES], ids=[r[2] for r in SITES])
def test_sites(src, expected):
    assert [src[s.node.start : s.node.end] for s in sites(parse(src))] == expected


def test_site_atoms_in_a_loop_and_kwargs():
    src = "{% for m in messages %}{{ m.content }}{% endfor %}"
    (site,) = sites(parse(src), ("enable_thinking",))
    assert [a.kind for a in site.atoms] == [
        "role", "content", "tool_calls", "reasoning", "final", "first", "last", "prev_assistant", "prev_tool",
        "last_assistant", "enable_thinking_on", "enable_thinking_off",
    ]
    assert {a.scope for a in site.atoms if a.kind in ("role", "first")} == {0}
    assert {a.scope for a in site.atoms if a.kind.startswith(("last_", "enable"))} == {-1}


# --- instrument + render gives back the original -------------------------------------------------

TEMPLATES = [
    ("A{{ x }}B", "text-and-output"),
    ("A\n{% for m in messages %}\n  <{{ m.role }}>\n  {{- m.content -}}\n{% endfor %}\nZ\n", "loop-with-whitespace-control"),
    ("{% if x %}\n  X\n{% else %}\n  Y\n{% endif %}\n", "if-else-trim-lstrip"),
    ("{# c #}\n{% set y = 'Y' %}\n{{ y }}\n{% raw %}{{ raw }}{% endraw %}\n", "comment-set-raw"),
    ("{% macro f(a) %}[{{ a }}]{% endmacro %}{{ f(x) }}\n{% macro g() %}<{{ caller() }}>{% endmacro %}"
     "{% call g() %}c{% endcall %}", "macro-and-call"),
    ("{%- for m in messages -%}\r\n  {{ m.content }}\r\n{%- endfor -%}\r\n", "crlf"),
    ("{% for m in messages %}{{ m.content }}{% else %}none{% endfor %}{% filter upper %}f{% endfilter %}", "for-else-filter"),
]
MESSAGES = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]


@pytest.mark.parametrize("src", [t for t, _ in TEMPLATES], ids=[i for _, i in TEMPLATES])
def test_instrumented_render_gives_original_text(src):
    inst = instrument(parse(src))
    raw = render(inst.compiled, MESSAGES, x="X")[0]
    trace = read_trace(inst, raw)
    assert trace.text == render(src, MESSAGES, x="X")[0]


@pytest.mark.parametrize("src", [t for t, _ in TEMPLATES], ids=[i for _, i in TEMPLATES])
def test_emissions_attribute_every_character_once(src):
    inst = instrument(parse(src))
    trace = read_trace(inst, render(inst.compiled, MESSAGES, x="X")[0])
    owned = sorted(c for e in trace.emissions for c in range(e.start, e.end))
    assert owned == list(range(len(trace.text)))


def test_emissions_name_their_node_and_atoms():
    src = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
    inst = instrument(parse(src))
    trace = read_trace(inst, render(inst.compiled, MESSAGES)[0])
    content = [e for e in trace.emissions if isinstance(inst.sites[e.site].node, Output)
               and "content" in src[inst.sites[e.site].node.start : inst.sites[e.site].node.end]]
    assert [trace.text[e.start : e.end] for e in content] == ["hi", "yo"]

    def kinds(e):
        return {a.kind: v for a, v in e.atoms.items()}

    assert [kinds(e)["role"] for e in content] == [False, True]
    assert [kinds(e)["first"] for e in content] == [True, False]
    assert [kinds(e)["last"] for e in content] == [False, True]
    assert [kinds(e)["prev_assistant"] for e in content] == [False, False]
    assert [kinds(e)["last_assistant"] for e in content] == [True, True]


def test_final_and_prev_tool_atoms_read_the_outer_message_inside_an_inner_loop():
    """``final`` (the message is the conversation's last) stays readable inside an inner loop
    that shadows ``loop.last`` (a tool call's loop); ``prev_tool``: the previous message is a tool."""
    src = "{% for m in messages %}{% for c in m.calls or [m] %}<{{ c.role or 'call' }}>{% endfor %}{% endfor %}"
    inst = instrument(parse(src))
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "calls": [{"n": 1}]},
            {"role": "tool", "content": "r"}, {"role": "assistant", "calls": [{"n": 2}, {"n": 3}]}]
    trace = read_trace(inst, render(inst.compiled, msgs)[0])
    writes = [e for e in trace.emissions if isinstance(inst.sites[e.site].node, Output)]

    def kind(e, k, scope):
        return next(v for a, v in e.atoms.items() if a.kind == k and a.scope == scope)

    outer, inner = src.index("{% for m"), src.index("{% for c")
    assert [trace.text[e.start:e.end] for e in writes] == ["user", "call", "tool", "call", "call"]
    assert [kind(e, "final", outer) for e in writes] == [False, False, False, True, True]
    assert [kind(e, "last", inner) for e in writes] == [True, True, True, False, True]  # the inner loop's
    assert [kind(e, "prev_tool", inner) for e in writes] == [False, False, False, False, False]
    flat = "{% for m in messages %}<{{ m.role }}>{% endfor %}"
    inst = instrument(parse(flat))
    trace = read_trace(inst, render(inst.compiled, msgs)[0])
    roles = [e for e in trace.emissions if isinstance(inst.sites[e.site].node, Output)]
    assert [next(v for a, v in e.atoms.items() if a.kind == "prev_tool") for e in roles] == [False, False, False, True]


# --- atom sets: written once, compiled as if written out at every mark -------------------------

_OPENING = re.compile(r"tmplc_mark (\d+), 0, (\d+)((?:, \(1 if \(.*?\) else 0\))*)(?= [-+]?%\})")


def _written_out(source: str) -> str:
    """``source`` with every opening mark's atoms written out: each reference to a set replaced by
    the set's definition (so the parser reads every mark's atoms afresh)."""
    sets: dict[str, str] = {}

    def expand(m: re.Match) -> str:
        sets.setdefault(m.group(2), m.group(3))
        return f"tmplc_mark {m.group(1)}, 0, {m.group(2)}" + (m.group(3) or sets[m.group(2)])

    return _OPENING.sub(expand, source)


NESTED = ("{%- for m in messages %}{% if m.role == 'assistant' %}<a>{{ m.content }}{% for c in m.calls or [] %}"
          "[{{ c }}]{% endfor %}{% else %}<{{ m.role }}>{{ m.content }}{% endif %}{% endfor %}"
          "{% if add_generation_prompt %}<a>{% endif %}")


@pytest.mark.parametrize("src", [t for t, _ in TEMPLATES] + [NESTED], ids=[i for _, i in TEMPLATES] + ["nested-loops"])
def test_atom_sets_compile_to_the_code_of_atoms_written_out(src):
    inst = instrument(parse(src), ("enable_thinking",))
    expanded = _written_out(inst.source)
    marks = inst.source.count("tmplc_mark")
    assert expanded.count("(1 if (") > inst.source.count("(1 if (") > 0
    assert expanded.count("tmplc_mark") == marks
    env = environment(trace=True)
    assert env.compile(inst.source, raw=True) == env.compile(expanded, raw=True)


def test_an_atom_set_used_before_it_is_defined_is_a_syntax_error():
    with pytest.raises(jinja2.TemplateSyntaxError, match="atom set 3 is used before it is defined"):
        compile_template("{% tmplc_mark 0, 0, 3 %}x{% tmplc_mark 0, 1 %}", trace=True)
