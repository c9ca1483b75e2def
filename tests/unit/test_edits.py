"""tmplc.edits: whitespace-safe tag insertion.

Templates in the tables mark the insertion point with ``⁁`` (removed before parsing); the
rendering checks compare with plain jinja2 semantics through :func:`tmplc.render.render`
(``trim_blocks`` + ``lstrip_blocks``, as transformers).
"""

import pytest

from tmplc.edits import SPLIT_MARK, Editor, Insertion, cleanup, is_split_marker
from tmplc.render import render
from tmplc.syntax import parse

MARK = "⁁"


def at(marked: str) -> tuple[str, list[int]]:
    """Source without the ``⁁`` marks and the offsets where they were."""
    positions, out = [], []
    for ch in marked:
        if ch == MARK:
            positions.append(len("".join(out)))
        else:
            out.append(ch)
    return "".join(out), positions


def editor(marked: str) -> tuple[Editor, list[int]]:
    src, pos = at(marked)
    return Editor(parse(src)), pos


# --- mods: the whitespace-control table of the module docstring -----------------------------------

MODS = [
    # left of the insertion is text: the new tag starts like the block/var to its right
    ("A⁁{{ x }}", ("+", ""), "text-then-plain-output-gets-plus"),
    ("A⁁{{- x }}", ("-", ""), "text-then-dash-output-gets-dash"),
    ("A⁁{% if x %}{% endif %}", ("", ""), "text-then-plain-block-gets-plain-lstrip-as-before"),
    ("A⁁{%- if x %}{% endif %}", ("-", ""), "text-then-dash-block-gets-dash"),
    ("A⁁{%+ if x %}{% endif %}", ("+", ""), "text-then-plus-block-gets-plus"),
    ("A⁁{# c #}", ("", ""), "text-then-plain-comment-is-block-like"),
    ("A⁁{#- c #}", ("-", ""), "text-then-dash-comment-gets-dash"),
    ("A⁁{% raw %}r{% endraw %}", ("", ""), "text-then-raw-is-block-like"),
    ("A⁁", ("+", ""), "text-then-end-of-template-gets-plus"),
    # right of the insertion is text: the new tag ends like the block/var to its left
    ("{{ x }}⁁B", ("", "+"), "plain-output-then-text-gets-plus"),
    ("{{ x -}}⁁B", ("", "-"), "dash-output-then-text-gets-dash"),
    ("{% if x %}⁁B{% endif %}", ("", ""), "plain-block-then-text-gets-plain-trim-as-before"),
    ("{% if x -%}⁁B{% endif %}", ("", "-"), "dash-block-then-text-gets-dash"),
    ("{% if x +%}⁁B{% endif %}", ("", "+"), "plus-block-then-text-gets-plus"),
    ("{# c -#}⁁B", ("", "-"), "dash-comment-then-text-gets-dash"),
    ("⁁B", ("", "+"), "start-of-template-then-text-gets-plus"),
    # no text on a side: no modifier on that side
    ("{{ x }}⁁{{ y }}", ("", ""), "between-two-outputs"),
    ("{% if x %}⁁{{ y }}{% endif %}", ("", ""), "between-block-and-output"),
    ("{{ x }}⁁", ("", ""), "output-then-end-of-template"),
    ("{{- x -}}⁁{%- if y -%}{% endif %}", ("", ""), "dashes-without-text-between"),
    # inside a text run (a split) or next to a split placeholder: text untouched on both sides
    ("AB⁁CD", ("+", "+"), "inside-text"),
    ("A⁁" + SPLIT_MARK + "B", ("+", "+"), "text-then-split-mark"),
    ("A" + SPLIT_MARK + "⁁B", ("+", "+"), "split-mark-then-text"),
]


@pytest.mark.parametrize("marked, expected", [(m, e) for m, e, _ in MODS], ids=[i for *_, i in MODS])
def test_mods(marked, expected):
    ed, (pos,) = editor(marked)
    assert ed.mods(pos) == expected


RENDER_TAGS = [
    ("A⁁{{- x }}", ("generation",), "{%- generation %}", "one-tag-takes-both-sides"),
    ("{{ x -}}⁁B", ("endgeneration",), "{% endgeneration -%}", "right-modifier"),
    ("A⁁B", ("endif", "if c"), "{%+ endif %}{% if c +%}", "left-mod-on-first-right-mod-on-last"),
    ("{{ x }}⁁{{ y }}", ("a", "b", "c"), "{% a %}{% b %}{% c %}", "no-text-no-modifiers"),
]


@pytest.mark.parametrize("marked, bodies, expected", [r[:3] for r in RENDER_TAGS], ids=[r[3] for r in RENDER_TAGS])
def test_render_tags(marked, bodies, expected):
    ed, (pos,) = editor(marked)
    assert ed.render_tags(pos, bodies) == expected


# --- the strong check: inserted tags leave the rendering unchanged ---------------------------------

# One ⁁: an empty `{% if true %}{% endif %}` pair (and an empty generation pair) goes there.
# Two ⁁: `{% if true %}` at the first, `{% endif %}` at the second (a region, as assemble does).
IDENTITY = [
    ("A\n⁁{{ x }}\nB\n", "before-plain-output-after-newline"),
    ("A\n{{ x }}⁁\nB\n", "after-plain-output-before-newline"),
    ("A\n  ⁁{{- x -}}⁁  \nB", "around-dash-output-with-indent"),
    ("A\n  ⁁{% if x %}\n  B\n  {% endif %}⁁\nC\n", "around-plain-if-block-lstrip-and-trim"),
    ("A\n  {% if x %}⁁\n  B\n  ⁁{% endif %}\nC\n", "region-inside-if-body"),
    ("A\n  {%- if x -%}⁁\n  B\n  ⁁{%- endif -%}\nC", "inside-dash-if-body"),
    ("{% for m in messages %}\n  ⁁<{{ m.role }}>\n  {{ m.content }}⁁\n{% endfor %}\n", "region-in-loop-body"),
    ("{% for m in messages %}\n  <{{ m.role }}>⁁\n  ⁁{{ m.content }}\n{% endfor %}\n", "between-outputs-over-indent"),
    ("A {# c #}⁁\n  B\n  ⁁{#- d -#}⁁  C\n", "comments-with-and-without-dash"),
    ("x\n  ⁁{% raw %}{{ r }}{% endraw %}⁁\n  y", "around-raw-block"),
    ("{%+ if x %}⁁  A\n⁁{% endif +%}⁁\nB", "plus-modifiers"),
    ("  {{ x }}⁁  \r\n  ⁁{% if x %}⁁\r\n  B\r\n  {% endif %}\r\n", "crlf"),
    ("{% set y = 1 %}⁁\n\n{{ y }}⁁\n", "after-set-statement-and-before-final-newline"),
    ("⁁\n{{ x }}", "start-of-template-before-newline"),
    ("<|end|>⁁\n{% if x %}{% endif %}", "inside-text-before-newline"),
    ("{{ x }}\n⁁", "end-of-template-after-final-newline-normalized"),
    ("A\r\n⁁", "end-of-template-after-final-crlf-normalized"),
]
MESSAGES = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]


def _render(src: str) -> str:
    return render(src, MESSAGES, x="X")[0]


@pytest.mark.parametrize("bodies", [("if true", "endif"), ("generation", "endgeneration")], ids=["if-pair", "generation-pair"])
@pytest.mark.parametrize("marked", [m for m, _ in IDENTITY], ids=[i for _, i in IDENTITY])
def test_inserted_tags_keep_rendering(marked, bodies):
    src, positions = at(marked)
    ed = Editor(parse(src))
    if len(positions) == 2:
        ins = [Insertion(positions[0], bodies[:1]), Insertion(positions[1], bodies[1:])]
        new = ed.apply(ins)
        assert _render(new) == _render(src), new
    else:
        for pos in positions:
            new = ed.apply([Insertion(pos, bodies)])
            assert _render(new) == _render(src), new


NAIVE_BREAKS = [
    ("{{ x }}⁁\nB", "trim-blocks-would-eat-newline-after-output"),
    ("A\n  ⁁{{- x }}", "dash-output-would-no-longer-strip-indent"),
    ("{{ x -}}⁁  B", "dash-output-would-no-longer-strip-spaces"),
    ("A\n  ⁁{%+ if x %}{% endif %}", "lstrip-blocks-would-eat-indent-kept-by-plus"),
    ("A\n⁁", "end-of-template-without-normalize-keeps-final-newline"),
]


@pytest.mark.parametrize("marked", [m for m, _ in NAIVE_BREAKS], ids=[i for _, i in NAIVE_BREAKS])
def test_control_naive_insertion_changes_rendering(marked):
    """The identity table is able to fail: a tag without the computed modifiers changes these."""
    src, (pos,) = at(marked)
    naive = src[:pos] + "{% if true %}{% endif %}" + src[pos:]
    assert _render(naive) != _render(src)
    fixed = Editor(parse(src)).apply([Insertion(pos, ("if true", "endif"))])
    assert _render(fixed) == _render(src)


# --- normalize -----------------------------------------------------------------------------------

NORMALIZE = [
    ("A\n", 2, 1, "final-newline"),
    ("A\r\n", 3, 1, "final-crlf"),
    ("A\r", 2, 1, "final-cr"),
    ("A\n\n", 3, 2, "only-the-last-newline"),
    ("A", 1, 1, "no-final-newline"),
    ("{{ x }}\n", 8, 7, "final-text-is-a-newline"),
    ("{{ x }}", 7, 7, "last-leaf-not-text"),
    ("A\nB\n", 2, 2, "not-at-end"),
]


@pytest.mark.parametrize("src, pos, expected", [r[:3] for r in NORMALIZE], ids=[r[3] for r in NORMALIZE])
def test_normalize(src, pos, expected):
    assert Editor(parse(src)).normalize(pos) == expected


# --- apply ----------------------------------------------------------------------------------------

APPLY = [
    ("ABCDEF", [Insertion(1, ("t",))], [], "A{%+ t +%}BCDEF", "one-insertion"),
    ("ABCDEF", [], [(1, 3, "x")], "AxDEF", "one-replacement"),
    ("ABCDEF", [], [(4, 5, "y"), (1, 3, "x")], "AxDyF", "replacements-in-any-order"),
    ("ABCDEF", [Insertion(3, ("t",))], [(1, 3, "x")], "Ax{%+ t +%}DEF", "insertion-at-replacement-end"),
    ("ABCDEF", [Insertion(1, ("t",))], [(1, 3, "x")], "A{%+ t +%}xDEF", "insertion-at-replacement-start"),
    ("AB", [Insertion(1, ("a",)), Insertion(1, ("b",))], [], "A{%+ a +%}{%+ b +%}B", "same-position-keeps-order"),
    ("AB", [Insertion(1, ("endif", "if c"))], [], "A{%+ endif %}{% if c +%}B", "several-bodies-one-insertion"),
    ("AB\n", [Insertion(3, ("t",))], [], "AB{%+ t +%}\n", "insertion-at-end-moves-before-final-newline"),
    ("AB", [], [], "AB", "nothing"),
]


@pytest.mark.parametrize("src, ins, reps, expected", [r[:4] for r in APPLY], ids=[r[4] for r in APPLY])
def test_apply(src, ins, reps, expected):
    assert Editor(parse(src)).apply(ins, reps) == expected


OVERLAPS = [
    ("ABCDEF", [], [(1, 3, "x"), (2, 4, "y")], "overlapping-replacements"),
    ("ABCDEF", [Insertion(2, ("t",))], [(1, 3, "x")], "insertion-inside-replacement"),
    ("ABCDEF", [], [(1, 4, "x"), (2, 3, "y")], "nested-replacements"),
]


@pytest.mark.parametrize("src, ins, reps", [r[:3] for r in OVERLAPS], ids=[r[3] for r in OVERLAPS])
def test_apply_overlap_raises(src, ins, reps):
    with pytest.raises(ValueError, match="overlapping edits"):
        Editor(parse(src)).apply(ins, reps)


# --- split marks and join notes -------------------------------------------------------------------

CLEANUP = [
    ("A" + SPLIT_MARK + "B", "AB", "split-mark-dropped"),
    ("{{ a + '' }}{#tmplc-join: + #}{{ '' + b }}", "{{ a + b }}", "plus-join-rejoined-without-empty-strings"),
    ("{{ a }}{#tmplc-join: ~ #}{{ b }}", "{{ a ~ b }}", "tilde-join-rejoined"),
    ("{{ 'x' }}{#tmplc-join: + #}{{ '' + b }}", "{{ 'x' + b }}", "literal-left-term"),
    ("{{ a + '' }}{#tmplc-join:\n+ #}{{ '' + b }}", "{{ a\n+ b }}", "separator-with-newline"),
    ("{{ a + '' }}{#tmplc-join: + #}{% generation %}{{ '' + b }}",
     "{{ a + '' }}{% generation %}{{ '' + b }}", "tag-between-keeps-split-drops-note"),
    ("{{ a }}{#tmplc-join: ~ #}{{ b }}{#tmplc-join: ~ #}{{ c }}", "{{ a ~ b ~ c }}", "three-terms"),
    ("{# user comment #}AB", "{# user comment #}AB", "other-comments-kept"),
]


@pytest.mark.parametrize("text, expected", [r[:2] for r in CLEANUP], ids=[r[2] for r in CLEANUP])
def test_cleanup(text, expected):
    assert cleanup(text) == expected


@pytest.mark.parametrize(
    "src, expected",
    [(SPLIT_MARK, True), ('{{ "tmplc-split" }}', False), ("{{ x }}", False), ("A", False)],
    ids=["split-mark", "other-literal", "output", "text"],
)
def test_is_split_marker(src, expected):
    t = parse(src)
    assert is_split_marker(t.body[0], src) is expected
