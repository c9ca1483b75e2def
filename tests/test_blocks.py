"""One generation block per contiguous generated run: spans never meet after a multi-byte character.

transformers maps each generation span to tokens at its first and last character, so a span
ending in a character that a byte-level tokenizer splits into several tokens loses the rest of
them, even when the next span starts right there (issue 8).
"""

import pytest
from conftest import REPO, read

from tmplc.analysed import Analysed
from tmplc.conversations import Case, tool_call, wrap
from tmplc.render import render
from tmplc.verification import DefectKind, check_case, touching

ORIGINAL = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TWO_BLOCKS = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}"
    "{% generation %}{{ m.content }}{% endgeneration %}{% generation %}<|im_end|>\n{% endgeneration %}"
    "{% else %}{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ONE_BLOCK = TWO_BLOCKS.replace("{% endgeneration %}{% generation %}", "")


def chat(reply: str) -> Case:
    """A user turn and a reply; fields wrapped in the oracle's sentinels (which end in '»')."""
    return Case([{"role": "user", "content": wrap(0, "c", "hi")}, {"role": "assistant", "content": wrap(1, "c", reply)}])


def compiled(text: str):
    return Analysed(text).compiled


def test_touching_blocks_after_a_multibyte_character_are_a_defect():
    result = check_case(compiled(ORIGINAL), compiled(TWO_BLOCKS), chat("a cat 🐱"))
    assert [d.kind for d in result.defects] == [DefectKind.TOUCHING]
    assert not result.ok and "touch" in result.mask_message()
    assert result.defects[0].text.endswith("🐱«/1c»<|im_end|>\n")


def test_one_block_passes():
    assert check_case(compiled(ORIGINAL), compiled(ONE_BLOCK), chat("a cat 🐱")).ok


def test_touching_ignores_empty_spans_and_gaps():
    text = "ab🐱cd"
    assert touching(text, [(0, 3), (3, 5)]) != []
    assert touching(text, [(0, 3), (3, 3)]) == []
    assert touching(text, [(0, 3), (4, 5)]) == []
    assert touching(text, [(0, 2), (2, 5)]) == []  # after the ASCII "b"


@pytest.mark.parametrize("kwargs", [{}, {"enable_thinking": True}, {"enable_thinking": False}])
@pytest.mark.parametrize("tool_calls", [False, True])
@pytest.mark.parametrize("reasoning", [False, True])
def test_qwen3_golden_writes_one_block_per_turn(kwargs, tool_calls, reasoning):
    """The reply, its tool calls and its <|im_end|> are one block, whichever branch wrote the
    reply (the turn before the last query, the last turn, with or without reasoning/thinking)."""
    original = read(REPO / "templates" / "qwen3.jinja")
    training = read(REPO / "templates" / "qwen3_training.jinja")

    def reply(i):
        message = {"role": "assistant", "content": wrap(i, "c", "sure 🐱")}
        if reasoning:
            message["reasoning_content"] = wrap(i, "r", "think 𠀋")
        if tool_calls:
            message["tool_calls"] = [tool_call(i, 0, body="🐱")]
        return message

    messages = [{"role": "user", "content": wrap(0, "c", "hi")}, reply(1),
                {"role": "user", "content": wrap(2, "c", "more")}, reply(3)]
    case = Case(messages, kwargs=kwargs)
    result = check_case(compiled(original), compiled(training), case)
    assert result.ok, (result.render_diff, result.problem, result.mask_message())
    text, spans = render(training, messages, **kwargs)
    assert len(spans) == 2  # one per assistant turn
    assert all(text[a:b].endswith("<|im_end|>\n") for a, b in spans)


SHARED_CUE = """{%- for m in messages %}
    {%- if m.role == 'assistant' %}
        {%- if m.reasoning_content %}
            {{- '<a>\\n' + '<r>' + m.reasoning_content + '</r>' + m.content }}
        {%- else %}
            {{- '<a>\\n' + m.content }}
        {%- endif %}
        {{- '<end>' }}
    {%- else %}
        {{- '<' + m.role + '>' + m.content + '<end>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<a>\\n' }}{% endif %}"""


@pytest.mark.parametrize("layout", ["indented", "one-line"])
def test_shared_cue_is_hoisted_and_the_turn_is_one_block(layout):
    """Every branch starts with the same cue and generated text follows, then a terminator after
    the if: the cue moves out of the branches and one block covers the if and the terminator."""
    from tmplc import augment

    source = SHARED_CUE if layout == "indented" else "".join(line.strip() for line in SHARED_CUE.splitlines())
    result = augment(source, "t.jinja", examples=30)
    assert result.status == "proved", result.message
    assert "{{- '<a>\\n' }}{% generation %}" in result.text
    assert result.text.count("endgeneration") == 1  # one block
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "🐱", "reasoning_content": "r"},
                {"role": "user", "content": "x"}, {"role": "assistant", "content": "𠀋"}]
    text, spans = render(result.text, messages)
    assert [text[a:b] for a, b in spans] == ["<r>r</r>🐱<end>", "𠀋<end>"]


@pytest.mark.parametrize("node", ["{{- x }}", "{{ x }}", "{{ x -}}", "{%- if true %}{% endif %}", "{% if true -%}{%- endif +%}",
                                  "{%+ if true %}{% endif %}", "{# c #}"])
@pytest.mark.parametrize("around", [("a\n  ", "\n  b"), ("a  ", "  b"), ("a\n", "\nb")])
def test_stand_in_keeps_the_whitespace_effect(node, around):
    """A node replaced by its stand-in comment renders the text around it as the node did
    (with the node writing nothing)."""
    from tmplc.edits import stand_in
    from tmplc.render import environment
    from tmplc.syntax import parse

    source = around[0] + node + around[1]
    nodes = [n for n in parse(source).body if n.start >= len(around[0]) and n.end <= len(source) - len(around[1])]
    assert len(nodes) == 1, nodes
    replaced = around[0] + stand_in(nodes[0], "prompt") + around[1]
    env = environment()
    assert env.from_string(replaced).render() == env.from_string(source).render(x="")


def test_negate():
    from tmplc.rewrite import negate

    assert negate("not (a is b)") == "a is b"
    assert negate("not x") == "x"
    assert negate("(m.role == 'assistant')") == "not (m.role == 'assistant')"
    assert negate("not (a) and (b)") == "not (not (a) and (b))"
    assert negate("a or b") == "not (a or b)"
