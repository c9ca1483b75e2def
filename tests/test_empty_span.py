"""An empty generation span (a block that renders nothing) must not reach transformers.

transformers' ``apply_chat_template(..., return_assistant_tokens_mask=True)`` masks the tokens
``char_to_token(start)`` to ``char_to_token(end - 1)`` of every span; for an empty span inside a
token that is the token itself, though none of its characters is generated. tmplc used to wrap a
whole ``{% if m.role == 'assistant' %}`` in a block, which renders empty for every other message
(``mistralrs__deepseek_tool_call``: the Qwen3 token ``>\\n`` after ``<｜Assistant｜>``, issue 8).
Here the span falls inside the Qwen3 token ``><`` between two user messages.
"""

import pytest
from conftest import CORPUS, read
from real_tokenizers import get_tokenizer

from tmplc import augment
from tmplc.analysed import Analysed
from tmplc.conversations import Case, wrap
from tmplc.render import render
from tmplc.verification import DefectKind, check_case, empty_spans, merge_spans

ORIGINAL = (
    "{% for m in messages %}{% if m.role == 'user' %}<u>{{ m.content }}<a>{% endif %}"
    "{% if m.role == 'assistant' %}{{ m.content }}</s>{% endif %}{% endfor %}"
)
# What tmplc wrote before: the whole `if` in one block, entered (and empty) for a user message.
BLOCK_AROUND_IF = ORIGINAL.replace("{% if m.role == 'assistant' %}", "{% generation %}{% if m.role == 'assistant' %}") \
    .replace("</s>{% endif %}", "</s>{% endif %}{% endgeneration %}")
MESSAGES = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "bye"},
            {"role": "user", "content": "again"}]


@pytest.fixture(scope="module")
def qwen3():
    return get_tokenizer("qwen3")


def expected_mask(tok, text: str) -> list[int | None]:
    """From the tokenizer's offsets only: 1 for a token whose characters are all the assistant's
    reply and its stop (found by searching the text, not by tmplc), 0 for one with none of them,
    None for one with both (``s><``: the stop's end and the next message's start, masked whole)."""
    start = text.index("ok</s>")
    end = start + len("ok</s>")
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [1 if start <= a and b <= end else 0 if b <= start or a >= end else None for a, b in offsets]


def agrees(masked: list[int], expected: list[int | None]) -> bool:
    return len(masked) == len(expected) and all(e is None or m == e for m, e in zip(masked, expected))


def assistant_mask(tok, template: str) -> list[int]:
    out = tok.apply_chat_template(MESSAGES, chat_template=template, tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)
    return list(out["assistant_masks"])


def test_block_around_an_if_adds_a_token_at_token_level(qwen3):
    text = render(ORIGINAL, MESSAGES)[0]
    assert text == "<u>hi<a>ok</s><u>bye<a><u>again<a>"
    spans = render(BLOCK_AROUND_IF, MESSAGES)[1]
    junction = text.index("<u>again")
    assert (junction, junction) in spans  # the third message (a user's): an empty span between ">" and "<"
    masked, expected = assistant_mask(qwen3, BLOCK_AROUND_IF), expected_mask(qwen3, text)
    ids = qwen3(text, add_special_tokens=False)["input_ids"]
    added = [qwen3.convert_ids_to_tokens(ids[t]) for t, (m, e) in enumerate(zip(masked, expected)) if m and e == 0]
    assert added == ["><"]  # wholly outside the generated text


def test_character_level_proof_refuses_the_empty_span():
    case = Case([{**m, "content": wrap(i, "c", m["content"])} for i, m in enumerate(MESSAGES)])  # the oracle's sentinels
    result = check_case(Analysed(ORIGINAL).compiled, Analysed(BLOCK_AROUND_IF).compiled, case)
    assert [d.kind for d in result.defects] == [DefectKind.EMPTY]
    assert not result.ok and "empty span" in result.mask_message() and "char_to_token" in result.mask_message()


def test_augment_puts_the_block_inside_the_branch(qwen3):
    result = augment(ORIGINAL, examples=30)
    assert result.ok, result.message
    assert "{% if m.role == 'assistant' %}{% generation %}" in result.text
    text, spans = render(result.text, MESSAGES)
    assert text == render(ORIGINAL, MESSAGES)[0] and all(a < b for a, b in spans)
    assert agrees(assistant_mask(qwen3, result.text), expected_mask(qwen3, text))


def test_empty_spans_exemptions():
    text = "ab<x>\ncd"
    assert [d.span for d in empty_spans(text, [(0, 2), (5, 5)])] == [(5, 5)]
    assert empty_spans(text, [(0, 2), (8, 8)]) == []  # the end: char_to_token(start) is None
    assert empty_spans(text, [(5, 5), (5, 8)]) == []  # a span starts there: its first token is masked anyway
    assert [d.span for d in empty_spans(text, [(0, 0), (2, 4)])] == [(0, 0)]  # char_to_token(-1) raises


def test_deepseek_tool_call_passes_at_token_level(qwen3):
    result = augment(read(CORPUS / "mistralrs__deepseek_tool_call.jinja"), "mistralrs__deepseek_tool_call.jinja",
                     examples=25, tokenizer=qwen3)
    assert result.ok, result.message
    assert result.report.token_renderings > 0


# Two `if`s in a row that write only for an assistant (its reasoning, then its content): a block
# around both would be entered (and empty) for every user message; each `if` gets its own block
# inside its branch instead (they meet after `</t>`, where no token is lost).
TWO_IFS = (
    "{% for m in messages %}{% if m.role == 'user' %}<u>{{ m.content }}<a>{% endif %}"
    "{% if m.reasoning_content %}<t>{{ m.reasoning_content }}</t>{% endif %}"
    "{% if m.role == 'assistant' %}{{ m.content }}</s>{% endif %}{% endfor %}"
)


def test_augment_puts_a_block_inside_each_if_that_may_write_nothing():
    result = augment(TWO_IFS, examples=30)
    assert result.ok, result.message
    assert "{% if m.reasoning_content %}{% generation %}" in result.text
    assert "{% if m.role == 'assistant' %}{% generation %}" in result.text
    messages = [MESSAGES[0], {**MESSAGES[1], "reasoning_content": "hm"}, *MESSAGES[2:]]
    text, spans = render(result.text, messages)
    assert text == render(TWO_IFS, messages)[0] == "<u>hi<a><t>hm</t>ok</s><u>bye<a><u>again<a>"
    assert all(a < b for a, b in spans) and merge_spans(spans) == [(text.index("<t>"), text.index("<u>bye"))]
