"""``augment --prefix-preserving`` (issue 9, "re-rendered history, by policy"): history assistant
turns rendered as generated, a declared rendering change, proved prefix-preserving.

The properties are checked here independently of tmplc's oracle and verification core: on
hand-written multi-turn conversations, rendered with :func:`tmplc.render.render` only, every
assistant turn before the last renders in history exactly as it renders as the last message
(``render(messages[:i+1])`` is a prefix of ``render(messages)``), and the training template's
mask is, per turn, ``[len(render(messages[:i], add_generation_prompt=True)), len(render(messages[:i+1])))``
(the strict form, which holds for a prefix-preserving template).
"""

import pytest
from click.testing import CliRunner
from conftest import CORPUS, PROOF_EXAMPLES, REPO, read

from tmplc import augment
from tmplc.cli import main
from tmplc.reasons import Reason
from tmplc.render import merge_spans, render
from tmplc.rewrite import strip_header

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


def call(city):
    return [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}]


GPTOSS_CONVERSATIONS = [
    [{"role": "user", "content": "Hi"},
     {"role": "assistant", "thinking": "Greet back.", "content": "Hello!"},
     {"role": "user", "content": "Weather?"},
     {"role": "assistant", "thinking": "Say sunny.", "content": "Sunny."}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "thinking": "Call the tool.", "tool_calls": call("Paris")},
     {"role": "tool", "content": "18C"},
     {"role": "assistant", "thinking": "Report it.", "content": "18C in Paris."},
     {"role": "user", "content": "Thanks"},
     {"role": "assistant", "content": "You're welcome."}],
]

QWEN3_CONVERSATIONS = [
    [{"role": "user", "content": "Hi"},
     {"role": "assistant", "reasoning_content": "Greet back.", "content": "Hello!"},
     {"role": "user", "content": "Weather?"},
     {"role": "assistant", "reasoning_content": "Say sunny.", "content": "Sunny."}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "reasoning_content": "Call the tool.", "content": "", "tool_calls": call("Paris")},
     {"role": "tool", "content": "18C"},
     {"role": "assistant", "reasoning_content": "Report it.", "content": "18C in Paris."},
     {"role": "user", "content": "Thanks"},
     {"role": "assistant", "content": "You're welcome."}],
]


def expected_mask(template, messages, **kwargs):
    """The strict form from renderings alone: each assistant turn from the end of its generation
    prompt to the end of its rendering as the last message."""
    mask = set()
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(render(template, messages[:i], TOOLS, add_generation_prompt=True, **kwargs)[0])
            end = len(render(template, messages[: i + 1], TOOLS, **kwargs)[0])
            mask |= set(range(start, end))
    return mask


def check_prefix_preserving(training, original, conversations, history_marks, **kwargs):
    for messages in conversations:
        text, spans = render(training, messages, TOOLS, **kwargs)
        for i, m in enumerate(messages[:-1]):
            if m["role"] == "assistant":
                head = render(training, messages[: i + 1], TOOLS, **kwargs)[0]
                assert text.startswith(head), f"assistant message {i} is not rendered in history as generated"
                head = render(training, messages[:i], TOOLS, add_generation_prompt=True, **kwargs)[0]
                assert text.startswith(head)
        got = {c for a, b in merge_spans(spans) for c in range(a, b)}
        assert got == expected_mask(training, messages, **kwargs)
        # A final turn renders as the original renders it; only history changed.
        assert text != render(original, messages, TOOLS, **kwargs)[0]
        first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        assert render(training, messages[: first + 1], TOOLS, **kwargs)[0] == \
            render(original, messages[: first + 1], TOOLS, **kwargs)[0]
        for mark in history_marks:
            assert text.count(mark) == sum(m["role"] == "assistant" and bool(m.get("content")) for m in messages)


def test_gptoss_prefix_preserving():
    original = read(CORPUS / "trl__gptoss.jinja")
    result = augment(original, "trl__gptoss.jinja", examples=PROOF_EXAMPLES, seed=0, prefix_preserving=True)
    assert result.status == "proved", (result.reason, result.message)
    assert result.report.turns_checked > 0
    head = result.text.splitlines()[0]
    assert "rendering changed: history assistant turns rendered as generated (--prefix-preserving)" in head
    assert "`loop.last` -> true" in head
    # Every final-channel turn ends with the stop the model emits, <|return|>, in history too.
    check_prefix_preserving(result.text, original, GPTOSS_CONVERSATIONS, ["<|return|>"])
    text = render(result.text, GPTOSS_CONVERSATIONS[1], TOOLS)[0]
    assert "Call the tool." in text and "Greet back." in render(result.text, GPTOSS_CONVERSATIONS[0])[0]
    assert "-<|start|>assistant<|channel|>final<|message|>" in result.change
    assert "<|return|>" in result.change


def test_qwen3_prefix_preserving():
    original = read(CORPUS / "trl__qwen3.jinja")
    result = augment(original, "trl__qwen3.jinja", examples=PROOF_EXAMPLES, seed=0, prefix_preserving=True)
    assert result.status == "proved", (result.reason, result.message)
    head = result.text.splitlines()[0]
    assert "`loop.index0 > ns.last_query_index` -> true" in head
    check_prefix_preserving(result.text, original, QWEN3_CONVERSATIONS, [])
    # Reasoning is kept in history, as TRL's hand-written qwen3_training renders it.
    trl = read(CORPUS / "trl__qwen3_training.jinja")
    for messages in QWEN3_CONVERSATIONS:
        text = render(result.text, messages, TOOLS)[0]
        assert "Greet back." in text or "Call the tool." in text
        assert text == render(trl, messages, TOOLS)[0]
    assert "+<think>" in result.change


def test_qwen3_default_unchanged():
    """Without the flag the rendering stays byte-identical: history reasoning is dropped."""
    original = read(CORPUS / "trl__qwen3.jinja")
    result = augment(original, "trl__qwen3.jinja", examples=20, seed=0)
    assert result.status == "proved" and "rendering changed" not in result.text.splitlines()[0]
    text = render(result.text, QWEN3_CONVERSATIONS[0])[0]
    assert "Greet back." not in text and text == render(original, QWEN3_CONVERSATIONS[0])[0]


def test_already_prefix_preserving_is_byte_identical():
    original = read(REPO / "templates" / "chatml.jinja")
    plain = augment(original, "chatml.jinja", examples=20, seed=0)
    pp = augment(original, "chatml.jinja", examples=20, seed=0, prefix_preserving=True)
    assert plain.status == pp.status == "proved"
    assert pp.text == plain.text and pp.change == ""
    assert any("already rendered as generated" in n for n in pp.notes)


def test_not_prefix_preservable_is_refused_with_a_conversation():
    """DiffusionGemma writes a tool result inside the assistant turn: as the last message the
    turn's content follows its tool call, in history the result comes first; no condition fixes it."""
    original = read(CORPUS / "trl__diffusion_gemma.jinja")
    result = augment(original, "trl__diffusion_gemma.jinja", examples=20, seed=0, prefix_preserving=True)
    assert result.status == "unsupported" and result.reason is Reason.NOT_PREFIX_PRESERVABLE
    assert result.counterexample is not None and result.counterexample.case.messages


def test_append_stop_and_prefix_preserving_exclusive():
    with pytest.raises(ValueError):
        augment(read(REPO / "templates" / "chatml.jinja"), append_stop=True, prefix_preserving=True)


def test_cli_flag(tmp_path):
    src = tmp_path / "gptoss.jinja"
    src.write_text(read(CORPUS / "trl__gptoss.jinja"), encoding="utf-8")
    result = CliRunner().invoke(main, ["augment", str(src), "--examples", "20", "--prefix-preserving"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "rendering changed (--prefix-preserving)" in result.output
    assert "+++ gptoss.jinja (--prefix-preserving)" in result.output
    written = (tmp_path / "gptoss_training.jinja").read_text(encoding="utf-8")
    assert "(--prefix-preserving)" in written.splitlines()[0]
    assert strip_header(written) != strip_header(read(CORPUS / "trl__gptoss_training.jinja"))
    bad = CliRunner().invoke(main, ["augment", str(src), "--prefix-preserving", "--append-stop"])
    assert bad.exit_code == 2
