"""tmplc.verification: spans, mask defects, and the one exception policy of rendering comparisons."""

import pytest

from tmplc.conversations import Case
from tmplc.oracle import Oracle
from tmplc.verification import (
    DefectKind,
    Raised,
    Rendered,
    Renderings,
    mark_spans,
    mask_diff,
    mask_of,
    merge_spans,
    outcome,
    prefix_break,
    runs,
    same_rendering,
)

RUNS = [
    ([], [], "empty"),
    ([0], [(0, 1)], "one"),
    ([1, 2, 3], [(1, 4)], "one-run"),
    ([1, 2, 4, 5, 7], [(1, 3), (4, 6), (7, 8)], "three-runs"),
]


@pytest.mark.parametrize("chars, expected", [r[:2] for r in RUNS], ids=[r[2] for r in RUNS])
def test_runs(chars, expected):
    assert runs(chars) == expected
    assert mask_of(expected) == set(chars)


MASK_OF = [
    ([], set(), "no-spans"),
    ([(0, 2), (3, 4)], {0, 1, 3}, "two-spans"),
    ([(1, 1)], set(), "empty-span"),
    ([(0, 3), (1, 2)], {0, 1, 2}, "overlapping"),
]


@pytest.mark.parametrize("spans, expected", [r[:2] for r in MASK_OF], ids=[r[2] for r in MASK_OF])
def test_mask_of(spans, expected):
    assert mask_of(spans) == expected


MERGE = [
    ([], [], "empty"),
    ([(3, 5), (0, 2)], [(0, 2), (3, 5)], "sorted"),
    ([(0, 2), (2, 4)], [(0, 4)], "touching-merged"),
    ([(0, 5), (1, 2)], [(0, 5)], "nested"),
    ([(4, 6), (0, 3), (2, 5)], [(0, 6)], "chain"),
    ((( 1, 2),), [(1, 2)], "tuple-input"),
]


@pytest.mark.parametrize("spans, expected", [r[:2] for r in MERGE], ids=[r[2] for r in MERGE])
def test_merge_spans(spans, expected):
    assert merge_spans(spans) == expected


MARK = [
    ("abcdef", [(1, 3)], {}, "a⟦bc⟧def", "one-span"),
    ("abcdef", [(4, 5), (0, 1)], {}, "⟦a⟧bcd⟦e⟧f", "unsorted-spans"),
    ("abcdef", [(2, 2)], {}, "ab⟦⟧cdef", "empty-span"),
    ("abcdef", [(0, 6)], {}, "⟦abcdef⟧", "whole-text"),
    ("abc", [(1, 2)], {"open_": "[", "close": "]"}, "a[b]c", "custom-markers"),
    ("abc", [], {}, "abc", "no-spans"),
]


@pytest.mark.parametrize("text, spans, kw, expected", [r[:4] for r in MARK], ids=[r[4] for r in MARK])
def test_mark_spans(text, spans, kw, expected):
    assert mark_spans(text, spans, **kw) == expected


# --- mask_diff: text 0123456789..., turn 1 is [5, 10), turn 3 is [15, 20) ---------------------------

TEXT = "abcdefghijklmnopqrstuvwxyz"
ORACLE = Oracle(TEXT, {1: (5, 10), 3: (15, 20)}, [], {})

DIFFS = [
    ([(5, 10), (15, 20)], [], "exact"),
    ([(3, 10), (15, 20)], [(DefectKind.CUE, (3, 5), 1)], "masked-run-ending-at-turn-start-is-cue"),
    ([(5, 10), (12, 20)], [(DefectKind.CUE, (12, 15), 3)], "cue-of-second-turn"),
    ([(0, 2), (5, 10), (15, 20)], [(DefectKind.OTHER_ROLE, (0, 2), -1)], "masked-run-elsewhere-is-other-role"),
    ([(5, 12), (15, 20)], [(DefectKind.OTHER_ROLE, (10, 12), -1)], "masked-run-after-turn-end-is-other-role"),
    ([(5, 8), (15, 20)], [(DefectKind.STOP_TOKEN, (8, 10), 1)], "unmasked-run-reaching-turn-end-is-stop"),
    ([(5, 6), (8, 10), (15, 20)], [(DefectKind.FIELD, (6, 8), 1)], "unmasked-run-inside-turn-is-field"),
    ([(7, 10), (15, 20)], [(DefectKind.FIELD, (5, 7), 1)], "unmasked-turn-start-is-field"),
    ([(5, 10)], [(DefectKind.STOP_TOKEN, (15, 20), 3)], "whole-turn-missing-is-stop"),
    ([(4, 9), (15, 20)], [(DefectKind.CUE, (4, 5), 1), (DefectKind.STOP_TOKEN, (9, 10), 1)],
     "extra-runs-listed-before-missing-runs"),
]


@pytest.mark.parametrize("spans, expected", [r[:2] for r in DIFFS], ids=[r[2] for r in DIFFS])
def test_mask_diff(spans, expected):
    defects = mask_diff(ORACLE, spans)
    assert [(d.kind, d.span, d.turn) for d in defects] == expected
    assert all(d.text == TEXT[d.span[0] : d.span[1]] for d in defects)
    assert all(d.missing == (d.kind in (DefectKind.STOP_TOKEN, DefectKind.FIELD)) for d in defects)
    assert all(d.node is None for d in defects)


def test_mask_diff_names_the_owner_node():
    defects = mask_diff(ORACLE, [(3, 10), (15, 18)], owner={3: 42, 18: 7})
    assert [(d.kind, d.node) for d in defects] == [(DefectKind.CUE, 42), (DefectKind.STOP_TOKEN, 7)]


# --- outcome, same_rendering: one exception policy (type name and message) -------------------------

LOOP = "{% for m in messages %}{{ m.content }}{% endfor %}"
GP = "{% if add_generation_prompt %}>{% endif %}"
CASE = Case([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}])


def test_outcome_rendered_and_raised():
    assert outcome(LOOP, CASE) == Rendered("ua", ())
    assert outcome("{% generation %}x{% endgeneration %}", CASE) == Rendered("x", ((0, 1),), (0,))  # the tag's index
    two = "{% generation %}{{ m }}{% endgeneration %}{% generation %}y{% endgeneration %}"
    loop = "{% for m in messages %}" + two + "{% endfor %}"
    assert outcome(loop, CASE).blocks == (0, 1, 0, 1)  # source-order index of each span's tag, per render
    assert outcome("{{ raise_exception('no') }}", CASE) == Raised("TemplateError", "no")
    assert outcome("{{ 'a' + 1 }}", CASE) == Raised("TypeError", 'can only concatenate str (not "int") to str')
    assert str(Raised("TemplateError", "no")) == "TemplateError: no"


SAME = [
    (LOOP + GP, LOOP + GP, True, None, "identical"),
    (LOOP, "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}", True, None,
     "generation-markers-do-not-count"),
    (LOOP, LOOP + "!", True, (1, False), "different-text-found-on-first-prefix"),
    (LOOP, LOOP + GP, True, (1, True), "difference-with-generation-prompt-only"),
    (LOOP, LOOP + "{% if messages | length == 1 %}!{% endif %}", True, (1, False), "difference-on-a-prefix"),
    (LOOP, LOOP + "{% if messages | length == 1 %}!{% endif %}", False, None, "prefixes-off-checks-the-full-rendering-only"),
    (LOOP, "{{ raise_exception('no') }}", True, (1, False), "one-raises"),
    ("{{ raise_exception('no') }}", "{{ raise_exception('no') }}x", True, None, "both-raise-same-type-and-message"),
    ("{{ raise_exception('no') }}", "{{ raise_exception('nope') }}", True, (1, False), "both-raise-different-message"),
    ("{{ 'a' + 1 }}", "{{ raise_exception('can only concatenate str (not \"int\") to str') }}", True, (1, False),
     "both-raise-same-message-different-type"),
]


@pytest.mark.parametrize("a, b, prefixes, expected", [r[:4] for r in SAME], ids=[r[4] for r in SAME])
def test_same_rendering(a, b, prefixes, expected):
    diff = same_rendering(Renderings(a, CASE), Renderings(b, CASE), prefixes=prefixes)
    if expected is None:
        assert diff is None
    else:
        assert (diff.messages, diff.agp) == expected


def test_render_diff_describes_and_locates():
    diff = same_rendering(Renderings(LOOP, CASE), Renderings("{{ raise_exception('no') }}", CASE))
    assert diff.describe() == ("rendering of messages[:1] (add_generation_prompt=False) changed: "
                               "original gives text, training gives TemplateError: no")
    assert diff.first_difference == 0
    diff = same_rendering(Renderings(LOOP, CASE), Renderings(LOOP + "!", CASE))
    assert (diff.a, diff.b, diff.first_difference) == (Rendered("u"), Rendered("u!"), 1)
    diff = same_rendering(Renderings("abc", CASE), Renderings("abX", CASE))
    assert diff.first_difference == 2


def test_renderings_are_memoised():
    calls = []

    class Counting:
        def __init__(self, src):
            from tmplc.render import compile_template

            self.compiled = compile_template(src)

        def generate(self, **kw):
            calls.append(1)
            return self.compiled.generate(**kw)

    r = Renderings(Counting(LOOP), CASE)
    assert r.get(2, False) == r.get(2, False) == r.full()
    assert len(calls) == 1


# --- prefix_break --------------------------------------------------------------------------------

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
THINK = CHATML.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>\n{% endif %}")
assert THINK != CHATML

PREFIX = [
    (CHATML, ["user", "assistant", "user", "assistant"], None, "prefix-preserving"),
    (THINK, ["user", "assistant"], 1, "generation-prompt-text-history-never-shows"),
    (THINK, ["system", "user", "assistant"], 2, "first-assistant-index"),
    (THINK, ["user", "user"], None, "no-assistant-message"),
    ("{{ raise_exception('no') }}", ["user", "assistant"], None, "raising-template"),
    (CHATML + "{% if add_generation_prompt %}{{ raise_exception('gp') }}{% endif %}", ["user", "assistant"], None,
     "generation-prompt-raises"),
]


@pytest.mark.parametrize("template, roles, expected", [r[:3] for r in PREFIX], ids=[r[3] for r in PREFIX])
def test_prefix_break(template, roles, expected):
    case = Case([{"role": r, "content": f"c{i}"} for i, r in enumerate(roles)])
    assert prefix_break(Renderings(template, case)) == expected
