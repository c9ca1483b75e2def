"""tmplc.oracle: common prefixes that respect special tokens, and expected masks on tiny templates.

Another change redefines the stop token of a turn with no terminator (the next message's opening
marker becomes part of the previous turn). Every test here uses templates that write a
terminator, except those in the section "DEPENDS ON THE STOP-TOKEN DEFINITION" at the end.
"""

import pytest

from tmplc.conversations import Case, base_kwargs, wrap
from tmplc.oracle import cut_lcp, expected_masks, lcp
from tmplc.render import render

LCP = [
    ("", "", 0, "empty"),
    ("abc", "abd", 2, "differ-at-end"),
    ("ab", "abc", 2, "one-is-prefix"),
    ("same", "same", 4, "identical"),
    ("x", "y", 0, "differ-at-start"),
    ("é😀a", "é😀b", 2, "characters-not-bytes"),
]


@pytest.mark.parametrize("a, b, expected", [r[:3] for r in LCP], ids=[r[3] for r in LCP])
def test_lcp(a, b, expected):
    assert lcp(a, b) == expected
    assert lcp(b, a) == expected


CUT = [
    ("</s><|user|>", "</s><|assistant|>", 4, "pipe-token-half-matched-cut-to-its-opener"),
    ("abc</s>", "abc<|user|>", 3, "eos-vs-user-token-share-only-the-angle"),
    ("x [/INST]", "x [INST]", 2, "inst-tokens-share-only-the-bracket"),
    ("<|im_end|>\n<|im_start|>user", "<|im_end|>\n<|im_start|>assistant", 23, "whole-tokens-shared-no-cut"),
    ("<s>hello", "<s>help", 6, "plain-text-difference-no-cut"),
    ("ab", "ab", 2, "identical"),
    ("<|end|>", "<|end|>x", 7, "one-is-prefix-no-cut"),
    ("a <b c", "a <b d", 5, "opener-without-closer-after-no-cut"),
    ("<|user|>", "<|tool|>", 0, "token-at-start-cut-to-zero"),
]


@pytest.mark.parametrize("a, b, expected", [r[:3] for r in CUT], ids=[r[3] for r in CUT])
def test_cut_lcp(a, b, expected):
    assert cut_lcp(a, b) == expected
    assert cut_lcp(a, b) <= lcp(a, b)


# --- expected_masks ------------------------------------------------------------------------------

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The generation prompt holds `<think>\n`; history does not show it (DeepSeek-R1-like).
THINK_PROMPT_ONLY = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
# The generation prompt and history both show `<think>\n`.
THINK_EVERYWHERE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}<think>\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
LLAMA2 = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]"
    "{% else %} {{ m.content }} {{ eos_token }}{% endif %}{% endfor %}"
)
# A system message the template drops: the turn starts after the last message that renders.
DROPS_SYSTEM = (
    "{% for m in messages %}{% if m.role != 'system' %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)
# gpt-oss-like: the last assistant turn ends `<|return|>`, in history `<|end|>`.
RETURN_VS_END = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
    "{% if m.role == 'assistant' and loop.last %}<|return|>{% else %}<|end|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def conv(*roles: str) -> list[dict]:
    return [{"role": r, "content": wrap(i, "c", f"t{i}")} for i, r in enumerate(roles)]


def oracle_of(template: str, case: Case):
    def r(messages, agp):
        return render(template, messages, case.tools, add_generation_prompt=agp, **case.kwargs)[0]

    return expected_masks(r, case)


MASKS = [
    (CHATML, Case(conv("user", "assistant")), ["«1c»t1«/1c»<|im_end|>\n"], "chatml-one-turn-content-and-im-end"),
    (CHATML, Case(conv("system", "user", "assistant", "user", "assistant")),
     ["«2c»t2«/2c»<|im_end|>\n", "«4c»t4«/4c»<|im_end|>\n"], "chatml-two-turns"),
    (CHATML, Case(conv("user", "assistant", "user"), add_generation_prompt=True),
     ["«1c»t1«/1c»<|im_end|>\n"], "chatml-history-turn-with-final-generation-prompt"),
    (THINK_PROMPT_ONLY, Case(conv("user", "assistant")), ["«1c»t1«/1c»<|im_end|>\n"],
     "think-in-generation-prompt-only-is-not-in-the-turn"),
    (THINK_EVERYWHERE, Case(conv("user", "assistant")), ["«1c»t1«/1c»<|im_end|>\n"],
     "think-in-prompt-and-history-is-prompt"),
    (LLAMA2, Case(conv("user", "assistant"), kwargs=base_kwargs()), [" «1c»t1«/1c» </s>"],
     "llama2-last-turn-runs-to-eos"),
    (LLAMA2, Case(conv("user", "assistant", "user", "assistant"), kwargs=base_kwargs()),
     [" «1c»t1«/1c» </s>", " «3c»t3«/3c» </s>"], "llama2-history-turn-keeps-eos"),
    (DROPS_SYSTEM, Case(conv("user", "system", "assistant")), ["«2c»t2«/2c»</assistant>\n"],
     "dropped-message-before-the-turn"),
]


@pytest.mark.parametrize("template, case, expected", [r[:3] for r in MASKS], ids=[r[3] for r in MASKS])
def test_expected_masks(template, case, expected):
    oracle = oracle_of(template, case)
    assert oracle.problems == []
    assert [oracle.text[a:b] for a, b in oracle.turns.values()] == expected
    assert oracle.text == render(template, case.messages, add_generation_prompt=case.full_agp, **case.kwargs)[0]


def test_mask_is_the_union_of_turns():
    oracle = oracle_of(CHATML, Case(conv("user", "assistant", "user", "assistant")))
    assert oracle.mask() == {c for a, b in oracle.turns.values() for c in range(a, b)}
    assert sorted(oracle.turns) == [1, 3]


def test_first_message_assistant_is_not_a_turn():
    oracle = oracle_of(CHATML, Case(conv("assistant", "user", "assistant")))
    assert sorted(oracle.turns) == [2]


def test_fields_are_reported_per_message():
    oracle = oracle_of(CHATML, Case(conv("user", "assistant")))
    assert {i: [oracle.text[a:b] for a, b in s] for i, s in oracle.fields.items()} == {
        0: ["«0c»t0«/0c»"], 1: ["«1c»t1«/1c»"]}


def test_history_turn_is_masked_as_rendered():
    """gpt-oss shape: `<|return|>` after a final turn, `<|end|>` once later messages exist; the
    default policy masks each turn as this conversation renders it (docs/oracle.md)."""
    oracle = oracle_of(RETURN_VS_END, Case(conv("user", "assistant", "user")))
    assert oracle.problems == []
    assert [oracle.text[a:b] for a, b in oracle.turns.values()] == ["«1c»t1«/1c»<|end|>"]
    final = oracle_of(RETURN_VS_END, Case(conv("user", "assistant")))
    assert [final.text[a:b] for a, b in final.turns.values()] == ["«1c»t1«/1c»<|return|>"]


# --- THE STOP OF A TURN WITHOUT A TERMINATOR -----------------------------------------------------
# No end-of-turn text: a history turn's stop is the next message's opening marker (its special
# token), a final turn has no stop (docs/oracle.md, "The stop belongs to the turn").

NO_TERMINATOR = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"


def test_no_terminator_history_turn_ends_with_the_next_marker():
    oracle = oracle_of(NO_TERMINATOR, Case(conv("user", "assistant", "user")))
    assert oracle.problems == []
    assert [oracle.text[a:b] for a, b in oracle.turns.values()] == ["«1c»t1«/1c»<|user|>"]


def test_no_terminator_final_turn_has_no_stop():
    oracle = oracle_of(NO_TERMINATOR, Case(conv("user", "assistant")))
    assert oracle.problems == [] and oracle.unstopped == [1]
    assert [oracle.text[a:b] for a, b in oracle.turns.values()] == ["«1c»t1«/1c»"]
