"""Hypothesis strategies for conversations (imported by the proof only, never by ``lint``)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .conversations import TOOLS, Case, content_value, tool_call, wrap
from .probes import Features

_TEXT_ALPHABET = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Co", "Cn"), exclude_characters="«»\r\x00"
)
_SPECIAL = st.sampled_from(["", " ", "\n", "{{ x }}", "{% if %}", "<|im_end|>", "</s>", "  lead", "trail  ", "\n\nmulti\nline\n", "é中文🙂"])
texts = st.one_of(st.text(_TEXT_ALPHABET, max_size=12), _SPECIAL)

# Characters that are several tokens in byte-level BPE vocabularies: an emoji with a skin-tone
# modifier (2 code points, 8 bytes), CJK extension B (4 bytes), a combining mark (NFC merges it),
# a cat (3 Qwen3 tokens). A generation span ending inside one of them loses tokens (docs/tokens.md).
EDGE_CHARS = ("\U0001f44d\U0001f3fd", "\U0002000b", "e\u0301", "\U0001f431", "\u4e2d\u6587", "\U0001f642")
_EDGE = st.sampled_from(EDGE_CHARS)
_NEWLINES = st.sampled_from(["", "", "\n", "\n\n"])


@st.composite
def edge_texts(draw) -> str:
    """Field bodies that start and end with multi-byte characters (:data:`EDGE_CHARS`), optionally
    behind leading/trailing newlines: ``"\\n👍🏽 x 𠀋"``. Used as ``cases(features, edge_texts())``; the
    sentinels then sit right outside the edge characters, so use :func:`tmplc.tokens.plain` to get
    a field whose last character is the multi-byte one (right before the stop token)."""
    middle = draw(st.text(_TEXT_ALPHABET, max_size=6))
    return draw(_NEWLINES) + draw(_EDGE) + middle + draw(_EDGE) + draw(_NEWLINES)


@st.composite
def cases(draw, features: Features, bodies: st.SearchStrategy[str] | None = None) -> Case:
    """Hypothesis strategy for conversations a template supports (see :class:`Features`).

    Shapes: optional system message, 1-3 user rounds, assistant messages with optional
    reasoning and tool calls (dict or JSON-string arguments), tool results, empty assistant
    content with tool calls, multimodal content blocks, unicode / newlines / Jinja-looking text,
    ``tools``, ``enable_thinking`` true/false/absent, bos/eos tokens, and a final user message
    with or without the generation prompt. ``bodies`` draws the field bodies (default: ``texts``;
    :func:`edge_texts` for multi-byte edges).
    """
    body_texts = texts if bodies is None else bodies
    blocks_ok = features.block_content
    strings_ok = features.string_content
    use_blocks = draw(st.booleans()) if (blocks_ok and strings_ok) else blocks_ok and not strings_ok
    messages: list[dict] = []

    def content(i: int, role: str) -> Any:
        body = draw(body_texts)
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
            m["reasoning_content"] = wrap(i, "r", draw(body_texts))
        ncalls = draw(st.integers(0, 2)) if features.tool_calls else 0
        if ncalls:
            m["tool_calls"] = [tool_call(i, k, draw(st.sampled_from(features.tool_args)) == "json", draw(body_texts))
                               for k in range(ncalls)]
            if draw(st.booleans()):
                m["content"] = draw(st.sampled_from([[] if use_blocks else "", None]))
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
