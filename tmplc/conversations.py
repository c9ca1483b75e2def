"""The conversation model and the sentinel format (its one owner).

A :class:`Case` is a conversation with its template kwargs. Every field a template may render
(content, text blocks, reasoning, tool-call names and arguments, tool results) carries unique
sentinels ``«<message><field>»`` at its start and ``«/<message><field>»`` at its end, so the
oracle can find where each field landed in the rendered text without trusting the code under
test (:func:`field_spans`). Offsets are characters of the rendered text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .render import render

Span = tuple[int, int]
SENTINEL_RE = re.compile(r"«(/?)(\d+)([a-z]\d*)»")
# Any sentinel, also JSON-escaped inside a JSON-string argument (``\u00ab3c\u00bb``).
ANY_SENTINEL_RE = re.compile(r"(?:«|\\u00ab)/?\d+[a-z]\d*(?:»|\\u00bb)")

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

    @property
    def full_agp(self) -> bool:
        """The generation-prompt flag of the full rendering: never after a final assistant message."""
        return self.messages[-1]["role"] != "assistant" and self.add_generation_prompt

    def render(self, template, messages: list[dict] | None = None, agp: bool | None = None):
        """Render ``messages`` (default: the whole conversation) with this case's tools and kwargs.

        ``agp`` defaults to :attr:`full_agp`. Returns ``(text, spans)`` as :func:`tmplc.render.render`.
        """
        return render(template, self.messages if messages is None else messages, self.tools,
                      add_generation_prompt=self.full_agp if agp is None else agp, **self.kwargs)

    def describe(self) -> str:
        data: dict[str, Any] = {"messages": self.messages}
        if self.tools:
            data["tools"] = "[get_weather]"
        data.update(self.kwargs)
        if self.add_generation_prompt:
            data["add_generation_prompt"] = True
        return json.dumps(data, ensure_ascii=False, indent=1)


T = TypeVar("T")


class PerCase(Generic[T]):
    """Values memoised per :class:`Case` object (a case holds lists and dicts, so it is its
    identity that keys the memo; the case is kept alive with its value, so its ``id`` is not
    reused by another case)."""

    def __init__(self) -> None:
        self._values: dict[int, tuple[Case, T]] = {}

    def get(self, case: Case, compute: Callable[[Case], T]) -> T:
        """The value of ``case``, ``compute(case)`` the first time this case object is asked for."""
        hit = self._values.get(id(case))
        if hit is None or hit[0] is not case:
            hit = self._values[id(case)] = (case, compute(case))
        return hit[1]


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


def field_spans(text: str) -> dict[int, list[Span]]:
    """Spans of sentinel-wrapped fields in ``text``: message index → list of (start, end).

    A field whose closing sentinel is missing (the template cut it) spans its opening sentinel
    only. Only the first occurrence of each field is used (a tool message may repeat a name).
    """
    opens: dict[tuple[int, str], int] = {}
    spans: dict[tuple[int, str], Span] = {}
    for m in SENTINEL_RE.finditer(text):
        closing, idx, name = m.group(1), int(m.group(2)), m.group(3)
        key = (idx, name)
        if key in spans:
            continue
        if not closing:
            if key not in opens:
                opens[key] = m.start()
        elif key in opens:
            spans[key] = (opens.pop(key), m.end())
    for key, start in opens.items():
        spans.setdefault(key, (start, text.index("»", start) + 1))
    out: dict[int, list[Span]] = {}
    for (idx, _), span in spans.items():
        out.setdefault(idx, []).append(span)
    return out


def strip_sentinels(value: Any) -> Any:
    """``value`` with every sentinel (``«3c»``, ``«/3c»``, ``«1a0»``...) removed from its strings,
    recursively through dicts, lists and JSON-string tool arguments."""
    if isinstance(value, str):
        return ANY_SENTINEL_RE.sub("", value)
    if isinstance(value, dict):
        return {k: strip_sentinels(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_sentinels(v) for v in value]
    return value


FIELD_RE = re.compile(r"«(\d+[cra]\d*)»(.*?)«/\1»", re.S)
_ANY_FIELD_RE = re.compile(r"«(\d+)([a-z])(\d*)»(.*?)«/\1\2\3»", re.S)
# A sentinel cut by a slice of the text: its tail at the start, its head at the end.
_CUT_SENTINEL_RE = re.compile(r"^/?\d*[a-z]?\d*»|«/?\d*[a-z]?\d*$")
_FIELD_NAMES = {"c": "content", "r": "reasoning", "a": "tool-call argument", "n": "tool-call name"}


def readable(text: str) -> str:
    """``text`` (a rendering of a probe) as a user may read it: every sentinel-wrapped field
    becomes its body, or ``{empty content of message 0}`` when the body is empty; a sentinel left
    unpaired (a template that cut a field) or cut by a slice of ``text`` at either end is removed.
    For messages meant for users (lint, augment, show): no internal sentinel leaves tmplc."""

    def field(m: re.Match) -> str:
        if m.group(4):
            return m.group(4)
        return f"{{empty {_FIELD_NAMES.get(m.group(2), 'field')} of message {m.group(1)}}}"

    return _CUT_SENTINEL_RE.sub("", ANY_SENTINEL_RE.sub("", _ANY_FIELD_RE.sub(field, text)))



def plain(case: Case, fill: str | None = None) -> Case:
    """The same conversation without sentinels: fields hold only their drawn bodies.

    The oracle needs sentinels to find fields; the token check does not (it compares generation
    spans with token masks). Sentinels end every field with ``»`` (2 bytes in UTF-8, one Qwen3
    token), so the character before a stop token is never the field's own and a span ending inside
    a multi-byte character goes unseen: a final ``🐱`` right before ``<|im_end|>`` only occurs in a
    plain case. Tool-call names that become empty are replaced by ``get_weather``.

    Args:
        case: a conversation whose fields carry sentinels (:mod:`tmplc.conversations`).
        fill: when given, the body of every content, reasoning or (dict) argument field that is
            exactly one empty sentinel pair (the fixed probes) becomes ``fill``.

    Returns:
        A new :class:`Case`; ``case`` is not modified.
    """
    messages = case.messages
    if fill is not None:
        messages = _fill(messages, fill)
    messages = strip_sentinels(messages)
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call.get("function", call)
            if isinstance(fn, dict) and fn.get("name") == "":
                fn["name"] = "get_weather"
        if m.get("role") == "tool" and m.get("name") == "":
            m["name"] = "get_weather"
    return Case(messages, case.tools, dict(case.kwargs), case.add_generation_prompt)


def _fill(value: Any, fill: str) -> Any:
    if isinstance(value, str):
        m = FIELD_RE.fullmatch(value)
        return fill if m and m.group(2) == "" else value
    if isinstance(value, dict):
        return {k: _fill(v, fill) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, fill) for v in value]
    return value
