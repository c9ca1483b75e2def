"""tmplc.split: string-literal cuts, top-level concatenation terms, run-time splits."""

import pytest

from tmplc.locate import STRADDLE, Labelled
from tmplc.render import render
from tmplc.split import _common_prefix, _common_suffix, concat_terms, runtime_split, split_literal
from tmplc.syntax import parse
from tmplc.trace import Emission


def value(literal_or_expr: str, **variables) -> str:
    """What jinja2 renders for ``{{ EXPR }}`` (the semantics the split must keep)."""
    return render("{{ " + literal_or_expr + " }}", [], **variables)[0]


# --- split_literal: offsets are characters of the literal's VALUE ---------------------------------

SPLIT_LITERAL = [
    ("'ab'", 1, ("'a'", "'b'"), "plain"),
    ("'ab'", 0, ("''", "'ab'"), "at-start"),
    ("'ab'", 2, ("'ab'", "''"), "at-end"),
    ('"ab"', 1, ('"a"', '"b"'), "double-quotes-kept"),
    ("'a\\nb'", 1, ("'a'", "'\\nb'"), "before-escaped-newline"),
    ("'a\\nb'", 2, ("'a\\n'", "'b'"), "after-escaped-newline-counts-one-character"),
    ("'\\\\x'", 1, ("'\\\\'", "'x'"), "escaped-backslash-is-one-character"),
    ("'it\\'s'", 2, ("'it'", "'\\'s'"), "before-escaped-quote"),
    ("'it\\'s'", 3, ("'it\\''", "'s'"), "after-escaped-quote"),
    ('"q\\"r"', 2, ('"q\\""', '"r"'), "escaped-double-quote"),
    ("'\\u00e9x'", 1, ("'\\u00e9'", "'x'"), "unicode-escape-is-one-character"),
    ("'\\x41B'", 1, ("'\\x41'", "'B'"), "hex-escape"),
    ("'\\tX'", 1, ("'\\t'", "'X'"), "tab-escape"),
    ("'éb'", 1, ("'é'", "'b'"), "non-ascii-literal-character"),
    ("'😀b'", 1, ("'😀'", "'b'"), "astral-character-is-one-character"),
    ("'a\r\nb'", 2, ("'a\r\n'", "'b'"), "crlf-inside-literal-is-one-newline"),
    ("'a\r\nb'", 1, ("'a'", "'\r\nb'"), "before-crlf"),
    ("'<|im_start|>assistant\\n'", 22, ("'<|im_start|>assistant\\n'", "''"), "chatml-cue"),
    ("'\\n<tool_call>\\n'", 1, ("'\\n'", "'<tool_call>\\n'"), "qwen-tool-call-boundary"),
]


@pytest.mark.parametrize("literal, offset, expected", [r[:3] for r in SPLIT_LITERAL], ids=[r[3] for r in SPLIT_LITERAL])
def test_split_literal(literal, offset, expected):
    assert split_literal(literal, offset) == expected
    a, b = expected
    # jinja2 agrees: the first part's value has `offset` characters and the parts join to the whole
    assert len(value(a)) == offset
    assert value(a) + value(b) == value(literal)


@pytest.mark.parametrize(
    "literal, offset",
    [("'ab'", 3), ("'ab'", 99), ("''", 1)],
    ids=["one-past-the-end", "far-past-the-end", "empty-literal"],
)
def test_split_literal_impossible_offset(literal, offset):
    assert split_literal(literal, offset) is None


@pytest.mark.parametrize(
    "literal",
    ["'a\\\\b\\\\c'", "'\\u00e9\\u00e8\\n'", "'x\\'y\\\"z'", "'\\x41\\x42'", "'a\r\nb\rc'"],
    ids=["backslashes", "unicode-escapes", "quotes", "hex-escapes", "crlf-and-cr"],
)
def test_split_literal_every_offset_agrees_with_jinja(literal):
    whole = value(literal)
    for offset in range(len(whole) + 1):
        parts = split_literal(literal, offset)
        assert parts is not None, offset
        assert value(parts[0]) == whole[:offset]
        assert value(parts[1]) == whole[offset:]


# --- concat_terms --------------------------------------------------------------------------------

CONCAT = [
    ("{{ a + b }}", ["a", "b"], "plus"),
    ("{{ a ~ b ~ c }}", ["a", "b", "c"], "tilde"),
    ("{{ a + b ~ c }}", ["a", "b ~ c"], "tilde-binds-tighter-than-plus"),
    ("{{ a ~ b + c }}", ["a ~ b", "c"], "tilde-binds-tighter-than-plus-left"),
    ("{{ '<|assistant|>\\n' + content + '<|end|>' }}", ["'<|assistant|>\\n'", "content", "'<|end|>'"], "phi3-like"),
    ("{{ (a + b) ~ c }}", ["(a + b)", "c"], "parentheses-are-one-term"),
    ("{{ a | trim + b }}", ["a | trim", "b"], "filter-binds-tighter-than-plus"),
    ("{{ 'x' ~ b | default('') }}", ["'x'", "b | default('')"], "filter-with-arguments"),
    ("{{ x[a + 1] ~ y }}", ["x[a + 1]", "y"], "plus-inside-subscript-is-not-top-level"),
    ("{{ a ~ b.replace(d, e) }}", ["a", "b.replace(d, e)"], "comma-inside-call"),
    ("{{- a + b -}}", ["a", "b"], "dash-delimiters"),
    ("{{ a\n  + b }}", ["a", "b"], "newline-in-expression"),
]


@pytest.mark.parametrize("src, expected", [r[:2] for r in CONCAT], ids=[r[2] for r in CONCAT])
def test_concat_terms(src, expected):
    node = parse(src).body[0]
    spans = concat_terms(node)
    assert spans is not None
    assert [src[a:b] for a, b in spans] == expected


REFUSED = [
    ("{{ a }}", "single-term"),
    ("{{ f(a + b) }}", "plus-only-inside-call"),
    ("{{ a + b if c else d }}", "conditional-expression"),
    ("{{ a and b ~ c }}", "and"),
    ("{{ a or b }}", "or"),
    ("{{ not a ~ b }}", "not"),
    ("{{ a == b ~ c }}", "comparison"),
    ("{{ a ~ b in c }}", "in"),
    ("{{ a is defined ~ b }}", "is-test"),
    ("{{ a - b }}", "minus"),
    ("{{ a + b - c }}", "minus-after-plus-would-regroup"),
    ("{{ a ~ b * 2 }}", "multiplication-after-tilde"),
    ("{{ a * b + c }}", "multiplication"),
    ("{{ a, b }}", "tuple"),
    ("{{ + a }}", "leading-operator"),
]


@pytest.mark.parametrize("src", [r[0] for r in REFUSED], ids=[r[1] for r in REFUSED])
def test_concat_terms_refused(src):
    assert concat_terms(parse(src).body[0]) is None


@pytest.mark.parametrize("src", [r[0] for r in CONCAT], ids=[r[2] for r in CONCAT])
def test_concat_terms_render_like_the_whole_for_strings(src):
    """Each term rendered on its own, joined, equals the whole (string operands)."""
    node = parse(src).body[0]
    env = dict(a="A", b="BD", c="C", d="D", e="E", content="hi", x=["p", "q"], y="Y", m="M")
    if "x[a" in src:
        env["a"] = 0
    whole = render(src, [], **env)[0]
    parts = "".join(render("{{ " + src[s:e] + " }}", [], **env)[0] for s, e in concat_terms(node))
    assert parts == whole


# --- runtime_split -------------------------------------------------------------------------------

HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"


def labelled(texts_and_cuts):
    items = [Labelled(Emission(0, 0, len(t), {}, trace=k), STRADDLE, cuts) for k, (t, cuts) in enumerate(texts_and_cuts)]
    texts = {k: t for k, (t, _) in enumerate(texts_and_cuts)}
    return items, (lambda it: texts[it.emission.trace])


RUNTIME = [
    ("{{ content }}", [(HEADER + "hi<|eot_id|>", (47,)), (HEADER + "hello there<|eot_id|>", (47,))],
     f'{{{{ (content)[:(content).find({HEADER!r}) + 47] }}}}{{{{ (content)[(content).find({HEADER!r}) + 47:] }}}}'
     .replace("'", '"').replace("\n", "\\n"),
     "llama3-cue-anchor"),
    ("{{ out }}", [("yo<|end|>\n<|assistant|>", (2,)), ("hey<|end|>\n<|assistant|>", (3,))],
     '{{ (out)[:(out).rfind("<|end|>\\n<|assistant|>")] }}{{ (out)[(out).rfind("<|end|>\\n<|assistant|>"):] }}',
     "tail-anchor-when-cues-differ"),
    ("{{- m | trim -}}", [("A:x", (2,)), ("A:yy", (2,))],
     '{{- (m | trim)[:(m | trim).find("A:") + 2] }}{{ (m | trim)[(m | trim).find("A:") + 2:] -}}',
     "keeps-delimiters-and-parenthesises-the-expression"),
]


@pytest.mark.parametrize("src, items, expected", [r[:3] for r in RUNTIME], ids=[r[3] for r in RUNTIME])
def test_runtime_split(src, items, expected):
    node = parse(src).body[0]
    straddles, emitted = labelled(items)
    start, end, replacement = runtime_split(node, src, straddles, emitted)
    assert (start, end) == (0, len(src))
    assert replacement == expected


SAMPLES = ["", "x", HEADER, HEADER + "hi<|eot_id|>", "no anchor at all", "<|end|>", "a<|end|>\n<|assistant|>b",
           "é😀\n" * 3, HEADER * 2 + "twice"]


@pytest.mark.parametrize("src, items", [r[:2] for r in RUNTIME], ids=[r[3] for r in RUNTIME])
def test_runtime_split_never_changes_the_rendering(src, items):
    """X[:K] ~ X[K:] == X for every value, anchor found or not."""
    node = parse(src).body[0]
    straddles, emitted = labelled(items)
    _, _, replacement = runtime_split(node, src, straddles, emitted)
    name = node.sig()[0].text
    for sample in SAMPLES:
        assert render(replacement, [], **{name: sample})[0] == render(src, [], **{name: sample})[0]


def test_runtime_split_boundary_is_at_the_anchor():
    src = "{{ content }}"
    straddles, emitted = labelled(RUNTIME[0][1])
    _, _, replacement = runtime_split(parse(src).body[0], src, straddles, emitted)
    first, second = replacement.split("}}{{")
    value_ = HEADER + "new body<|eot_id|>"
    assert render(first + "}}", [], content=value_)[0] == HEADER
    assert render("{{" + second, [], content=value_)[0] == "new body<|eot_id|>"


NO_ANCHOR = [
    ([("AyoB", (1,)), ("CheyD", (1,))], "no-common-cue-no-common-tail"),
    ([("HDR xx HDR yo!", (11,)), ("HDR zz!", (4,))], "cue-occurs-earlier-in-one-emission"),
]


@pytest.mark.parametrize("items", [r[0] for r in NO_ANCHOR], ids=[r[1] for r in NO_ANCHOR])
def test_runtime_split_without_anchor(items):
    src = "{{ x }}"
    straddles, emitted = labelled(items)
    assert runtime_split(parse(src).body[0], src, straddles, emitted) is None


@pytest.mark.parametrize(
    "texts, prefix, suffix",
    [
        (["abc", "abd"], "ab", ""),
        (["xbc", "abc"], "", "bc"),
        (["same", "same"], "same", "same"),
        (["a", "ab"], "a", ""),
        (["ba", "a"], "", "a"),
        (["", "x"], "", ""),
        (["only"], "only", "only"),
    ],
    ids=["prefix", "suffix", "identical", "one-is-prefix-of-other", "one-is-suffix-of-other", "empty", "single"],
)
def test_common_prefix_and_suffix(texts, prefix, suffix):
    assert _common_prefix(texts) == prefix
    assert _common_suffix(texts) == suffix


# --- split_edits: each straddling node kind, on hand-made evidence ----------------------------------

from tmplc.edits import Editor, cleanup  # noqa: E402
from tmplc.locate import Evidence  # noqa: E402
from tmplc.reasons import CannotAugment, Reason  # noqa: E402
from tmplc.split import split_edits  # noqa: E402
from tmplc.trace import instrument  # noqa: E402


def evidence(site: int, text: str, spans_and_cuts) -> Evidence:
    items = [Labelled(Emission(site, a, b, {}, trace=0), STRADDLE, cuts) for (a, b), cuts in spans_and_cuts]
    return Evidence(labels={site: items}, renders={0: text})


SPLIT_EDITS = [
    # (template, rendering, [(emission span, cuts)], split template, cleanup joins it back, id)
    ("A\r\nBC{{ x }}", "A\nBCX", [((0, 4), (2,))], 'A\r\n{{ "tmplc-split"[:0] }}BC{{ x }}', True,
     "text-run-split-after-crlf"),
    ("{{ '<|a|>\\nhi' }}", "<|a|>\nhi", [((0, 8), (6,))], "{{ '<|a|>\\n' }}{{ 'hi' }}", False, "string-literal-cut"),
    ("{{ 'abcdefg' }}", "abcdefg", [((0, 7), (2, 5))], "{{ 'ab' }}{{ 'cde' }}{{ 'fg' }}", False,
     "string-literal-two-cuts"),
    ("{{ '<|a|>\\n' + x + '<|e|>' }}", "<|a|>\nX<|e|>", [((0, 13), (6, 7))],
     "{{ '<|a|>\\n' }}{#tmplc-join: + #}{{ '' + x + '' }}{#tmplc-join: + #}{{ '<|e|>' }}", True,
     "concatenation-split-keeps-plus-type-errors"),
    ("{{ 'H:' ~ x }}", "H:X", [((0, 3), (2,))], "{{ 'H:' }}{#tmplc-join: ~ #}{{ x }}", True, "tilde-needs-no-empty-strings"),
]


@pytest.mark.parametrize("src, text, items, expected, rejoined", [r[:5] for r in SPLIT_EDITS], ids=[r[5] for r in SPLIT_EDITS])
def test_split_edits(src, text, items, expected, rejoined):
    template = parse(src)
    edits = split_edits(template, instrument(template), evidence(0, text, items))
    result = Editor(template).apply([], edits)
    assert result == expected
    assert render(result, [], x="X")[0] == render(src, [], x="X")[0]
    assert (cleanup(result) == src) is rejoined


@pytest.mark.parametrize("src", [r[0] for r in SPLIT_EDITS if "+" in r[0]], ids=["plus-concatenation"])
def test_split_edits_keep_the_type_error_of_plus(src):
    template = parse(src)
    text, items = SPLIT_EDITS[3][1], SPLIT_EDITS[3][2]
    result = Editor(template).apply([], split_edits(template, instrument(template), evidence(0, text, items)))
    errors = []
    for s in (src, result):
        with pytest.raises(TypeError) as info:
            render(s, [], x=None)
        errors.append(str(info.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize(
    "src, text, items",
    [
        ("{% raw %}ab{% endraw %}", "ab", [((0, 2), (1,))]),
        ("{{ x }}", "AyoBCheyD", [((0, 4), (1,)), ((4, 9), (1,))]),
    ],
    ids=["raw-block", "value-without-anchor"],
)
def test_split_edits_unsplittable(src, text, items):
    template = parse(src)
    with pytest.raises(CannotAugment) as info:
        split_edits(template, instrument(template), evidence(0, text, items))
    assert info.value.reason == Reason.UNSPLITTABLE_OUTPUT


@pytest.mark.parametrize("x", [None, 3], ids=["none-content", "number"])
def test_split_edits_mixed_plus_and_tilde_keeps_rendering(x):
    src = "{{ '<|a|>\\n' + x ~ '<|e|>' }}"
    template = parse(src)
    edits = split_edits(template, instrument(template), evidence(0, "<|a|>\nX<|e|>", [((0, 13), (6, 7))]))
    result = Editor(template).apply([], edits)
    assert render(result, [], x="X")[0] == render(src, [], x="X")[0]  # strings: fine
    assert render(src, [], x=x)[0] == f"<|a|>\n{x}<|e|>"
    assert render(result, [], x=x)[0] == render(src, [], x=x)[0]
