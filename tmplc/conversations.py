"""Conversations used to locate and to prove: fixed probes and hypothesis strategies.

Every field a template may render (content, text blocks, reasoning, tool-call names and
arguments, tool results) carries unique sentinels ``«<message><field>»`` at its start and
``«/<message><field>»`` at its end, so the oracle can find where each field landed in the
rendered text without trusting the code under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
        },
    }
]


@dataclass(frozen=True)
class Features:
    """What a template accepts, found by probing: each flag enables a part of the strategies."""

    system: bool = True
    tools: bool = True
    tool_calls: bool = True
    tool_role: bool = True
    reasoning: bool = True
    string_content: bool = True
    block_content: bool = False
    thinking_kwargs: tuple[str, ...] = ()  # template kwargs that switch reasoning (enable_thinking, thinking)
    tools_required: bool = False
    extra_kwargs: tuple[tuple[str, str], ...] = ()  # undeclared template variables given a placeholder

    def kwargs(self) -> dict[str, Any]:
        return {**base_kwargs(), **dict(self.extra_kwargs)}


@dataclass
class Case:
    """A conversation with its template kwargs.

    ``messages``: list of message dicts. ``tools``: tool schemas or None. ``kwargs``: extra
    template kwargs (``bos_token``, ``eos_token``, ``enable_thinking``...).
    ``add_generation_prompt`` applies to the full rendering when the conversation does not end
    with an assistant message (one that does is always rendered without it).
    """

    messages: list[dict]
    tools: list[dict] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    add_generation_prompt: bool = False

    def describe(self) -> str:
        data = {"messages": self.messages}
        if self.tools:
            data["tools"] = "[get_weather]"
        data.update(self.kwargs)
        if self.add_generation_prompt:
            data["add_generation_prompt"] = True
        return json.dumps(data, ensure_ascii=False, indent=1)


def sentinel(index: int, name: str, closing: bool = False) -> str:
    return f"«{'/' if closing else ''}{index}{name}»"


def wrap(index: int, name: str, body: str = "") -> str:
    return sentinel(index, name) + body + sentinel(index, name, closing=True)


def content_value(index: int, body: str, blocks: bool, image_first: bool = False) -> Any:
    """A content field: a string, or multimodal content blocks (text and image)."""
    if not blocks:
        return wrap(index, "c", body)
    text = {"type": "text", "text": wrap(index, "c", body)}
    return [{"type": "image"}, text] if image_first else [text]


def tool_call(index: int, k: int, json_string_args: bool = False, body: str = "") -> dict:
    args = {"city": wrap(index, f"a{k}", body)}
    return {
        "type": "function",
        "function": {"name": wrap(index, f"n{k}"), "arguments": json.dumps(args, ensure_ascii=False) if json_string_args else args},
    }


def base_kwargs() -> dict[str, Any]:
    return {"bos_token": "<s>", "eos_token": "</s>"}


def probe_cases(features: Features) -> list[Case]:
    """A fixed set of conversations covering the shapes Locate must see."""
    blocks = features.block_content and not features.string_content
    kw = features.kwargs()
    default_tools = TOOLS if features.tools_required else None
    cases: list[Case] = []

    def msg(i: int, role: str, **extra) -> dict:
        m: dict[str, Any] = {"role": role, "content": content_value(i, "", blocks)}
        m.update(extra)
        return m

    def add(messages, tools=None, agp=False, **kwargs):
        cases.append(Case(messages, tools or default_tools, {**kw, **kwargs}, agp))

    sys_first = [msg(0, "system")] if features.system else []
    o = len(sys_first)
    add(sys_first + [msg(o, "user"), msg(o + 1, "assistant")])
    add([msg(0, "user"), msg(1, "assistant"), msg(2, "user"), msg(3, "assistant")])
    add(sys_first + [msg(o, "user"), msg(o + 1, "assistant"), msg(o + 2, "user")], agp=True)
    if features.reasoning:
        add([msg(0, "user"), msg(1, "assistant", reasoning_content=wrap(1, "r")), msg(2, "user"),
             msg(3, "assistant", reasoning_content=wrap(3, "r"))])
    for name in features.thinking_kwargs:
        for flag in (True, False):
            add([msg(0, "user"), msg(1, "assistant"), msg(2, "user"), msg(3, "assistant")], **{name: flag})
            if features.reasoning:
                add([msg(0, "user"), msg(1, "assistant", reasoning_content=wrap(1, "r"))], **{name: flag})
                add([msg(0, "user"), msg(1, "assistant", reasoning_content=wrap(1, "r")), msg(2, "user")],
                    agp=True, **{name: flag})
    if features.tool_calls:
        tools = TOOLS if features.tools else None
        calls1 = [tool_call(1, 0)]
        calls2 = [tool_call(1, 0), tool_call(1, 1, json_string_args=True)]
        for calls in (calls1, calls2):
            for content in (True, False):
                m1 = msg(1, "assistant", tool_calls=calls)
                if not content:
                    m1["content"] = "" if not blocks else []
                conv = [msg(0, "user"), m1]
                if features.tool_role:
                    conv += [msg(2 + k, "tool", tool_call_id=f"call{k}", name=calls[k]["function"]["name"])
                             for k in range(len(calls))]
                    conv += [msg(2 + len(calls), "assistant")]
                add(conv, tools)
    if features.block_content and features.string_content:
        add([msg(0, "user"), {"role": "assistant", "content": content_value(1, "", True)}])
    if features.block_content:
        add([{"role": "user", "content": content_value(0, "", True, image_first=True)},
             {"role": "assistant", "content": content_value(1, "", True)}])
    return cases


# ----------------------------------------------------------------------------- strategies

_TEXT_ALPHABET = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Co", "Cn"), exclude_characters="«»\r\x00"
)
_SPECIAL = st.sampled_from(["", " ", "\n", "{{ x }}", "{% if %}", "<|im_end|>", "</s>", "  lead", "trail  ", "\n\nmulti\nline\n", "é中文🙂"])
texts = st.one_of(st.text(_TEXT_ALPHABET, max_size=12), _SPECIAL)


@st.composite
def cases(draw, features: Features) -> Case:
    """Hypothesis strategy for conversations a template supports (see :class:`Features`).

    Shapes: optional system message, 1-3 user rounds, assistant messages with optional
    reasoning and tool calls (dict or JSON-string arguments), tool results, empty assistant
    content with tool calls, multimodal content blocks, unicode / newlines / Jinja-looking text,
    ``tools``, ``enable_thinking`` true/false/absent, bos/eos tokens, and a final user message
    with or without the generation prompt.
    """
    blocks_ok = features.block_content
    strings_ok = features.string_content
    use_blocks = draw(st.booleans()) if (blocks_ok and strings_ok) else blocks_ok and not strings_ok
    messages: list[dict] = []

    def content(i: int, role: str) -> Any:
        body = draw(texts)
        if use_blocks:
            image_first = role == "user" and draw(st.booleans())
            return content_value(i, body, True, image_first)
        return content_value(i, body, False)

    if features.system and draw(st.booleans()):
        messages.append({"role": "system", "content": content(0, "system")})
    rounds = draw(st.integers(1, 3))
    use_tools = features.tools_required or (features.tool_calls and features.tools and draw(st.booleans()))
    for r in range(rounds):
        i = len(messages)
        messages.append({"role": "user", "content": content(i, "user")})
        last_round = r == rounds - 1
        if last_round and draw(st.integers(0, 4)) == 0:
            break  # conversation ends with a user message
        i = len(messages)
        m: dict[str, Any] = {"role": "assistant", "content": content(i, "assistant")}
        if features.reasoning and draw(st.booleans()):
            m["reasoning_content"] = wrap(i, "r", draw(texts))
        ncalls = draw(st.integers(0, 2)) if features.tool_calls else 0
        if ncalls:
            m["tool_calls"] = [tool_call(i, k, draw(st.booleans()), draw(texts)) for k in range(ncalls)]
            if draw(st.booleans()):
                m["content"] = [] if use_blocks else ""
        messages.append(m)
        if ncalls and features.tool_role:
            for k in range(ncalls):
                j = len(messages)
                messages.append({"role": "tool", "tool_call_id": f"call{k}", "name": m["tool_calls"][k]["function"]["name"],
                                 "content": content(j, "tool")})
            j = len(messages)
            messages.append({"role": "assistant", "content": content(j, "assistant")})
    kwargs = features.kwargs()
    for name in features.thinking_kwargs:
        flag = draw(st.sampled_from([None, True, False]))
        if flag is not None:
            kwargs[name] = flag
    agp = messages[-1]["role"] != "assistant" and draw(st.booleans())
    return Case(messages, TOOLS if use_tools else None, kwargs, agp)
