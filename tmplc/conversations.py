"""Conversations used to locate and to prove: fixed probes and hypothesis strategies.

Every field a template may render (content, text blocks, reasoning, tool-call names and
arguments, tool results) carries unique sentinels ``«<message><field>»`` at its start and
``«/<message><field>»`` at its end, so the oracle can find where each field landed in the
rendered text without trusting the code under test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jinja2

from .render import compile_template, environment, render

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
    tool_args: tuple[str, ...] = ("dict", "json")  # argument shapes the template renders
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
        js = features.tool_args[0] == "json"
        calls1 = [tool_call(1, 0, js)]
        calls2 = [tool_call(1, 0, js), tool_call(1, 1, "json" in features.tool_args)]
        for calls in (calls1, calls2):
            for content in ("text", "", None):
                m1 = msg(1, "assistant", tool_calls=calls)
                if content != "text":
                    m1["content"] = content if not blocks else ([] if content == "" else None)
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


# ----------------------------------------------------------------------------- probing

def _try(tpl, messages, tools=None, extra=None, **kw) -> str | None:
    try:
        return render(tpl, messages, tools, **{**base_kwargs(), **(extra or {}), **kw})[0]
    except Exception:  # noqa: BLE001
        return None


_UNDEFINED_RE = re.compile(r"'(\w+)' is undefined")


def _required_kwargs(tpl, messages, tools) -> dict[str, str]:
    """Template variables outside transformers' kwargs that the template cannot render
    without (firefunction's ``functions``): each gets a placeholder string."""
    extra: dict[str, str] = {}
    for _ in range(3):
        try:
            render(tpl, messages, tools, **{**base_kwargs(), **extra})
            return extra
        except jinja2.UndefinedError as exc:
            m = _UNDEFINED_RE.search(str(exc))
            if not m or m.group(1) in extra or m.group(1) in ("messages", "tools"):
                return {}
            extra[m.group(1)] = ""
        except Exception:  # noqa: BLE001
            return {}
    return {}


THINKING_KWARGS = ("enable_thinking", "thinking")


def thinking_kwargs(source: str) -> tuple[str, ...]:
    """The reasoning switches among the template's undeclared variables (jinja2.meta)."""
    from jinja2 import meta

    names = meta.find_undeclared_variables(_env_parse(source))
    return tuple(n for n in THINKING_KWARGS if n in names)


def _env_parse(source: str):
    return environment().parse(source)


def detect_features(source: str) -> Features:
    """Probe what the template accepts (roles, content shapes, tools, reasoning, kwargs)."""
    tpl = compile_template(source)
    s = lambda i, role, **kw: {"role": role, "content": wrap(i, "c"), **kw}  # noqa: E731
    b = lambda i, role, **kw: {"role": role, "content": [{"type": "text", "text": wrap(i, "c")}], **kw}  # noqa: E731
    basic_s, basic_b = [s(0, "user"), s(1, "assistant")], [b(0, "user"), b(1, "assistant")]
    extra: dict[str, str] = {}
    tools_required = False
    if _try(tpl, basic_s) is None and _try(tpl, basic_b) is None:
        if _try(tpl, basic_s, TOOLS) is not None or _try(tpl, basic_b, TOOLS) is not None:
            tools_required = True
        else:
            extra = _required_kwargs(tpl, basic_s, None) or _required_kwargs(tpl, basic_b, None)
    default_tools = TOOLS if tools_required else None

    def ok(messages, tools=None) -> str | None:
        return _try(tpl, messages, tools or default_tools, extra)

    string_content = "«/1c»" in (ok(basic_s) or "")
    block_content = "«/1c»" in (ok(basic_b) or "")
    m = s if string_content else b
    system = ok([m(0, "system"), m(1, "user"), m(2, "assistant")]) is not None
    tool_args = tuple(
        mode for mode in ("dict", "json")
        if ok([m(0, "user"), m(1, "assistant", tool_calls=[tool_call(1, 0, mode == "json")])]) is not None
    )
    tool_calls = bool(tool_args)
    call = m(1, "assistant", tool_calls=[tool_call(1, 0, tool_args[:1] == ("json",))])
    tools = ok([m(0, "user"), m(1, "assistant")], TOOLS) is not None
    tool_role = tool_calls and ok([m(0, "user"), call, m(2, "tool", tool_call_id="call0"), m(3, "assistant")]) is not None
    reasoning = ok([m(0, "user"), m(1, "assistant", reasoning_content=wrap(1, "r"))]) is not None
    return Features(system, tools, tool_calls, tool_role, reasoning, string_content, block_content,
                    thinking_kwargs(source), tools_required, tool_args or ("dict",), tuple(sorted(extra.items())))


def with_prefixes(cases: list[Case]) -> list[Case]:
    """Each case, plus every prefix of it that ends with a (non-final) assistant message."""
    out = []
    for c in cases:
        out.append(c)
        for i, m in enumerate(c.messages[:-1]):
            if m["role"] == "assistant" and i > 0:
                out.append(Case(c.messages[: i + 1], c.tools, c.kwargs, False))
    return out
