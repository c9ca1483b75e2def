"""What a template accepts, and the fixed probe conversations locate and lint render.

:func:`detect_features` renders a handful of tiny conversations to learn which roles, content
shapes (strings, multimodal content blocks), tool calls (dict or JSON-string arguments),
reasoning fields and kwargs (``enable_thinking``...) the template accepts; :func:`probe_cases`
builds the fixed probe set from those :class:`Features`; the hypothesis strategies
(:mod:`tmplc.strategies`) draw from the same features.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta

from .conversations import TOOLS, Case, base_kwargs, content_value, tool_call, wrap
from .render import compile_template, environment, render


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
    """The reasoning switches among the template's undeclared variables (jinja2.meta).

    Raises:
        jinja2.TemplateSyntaxError: ``source`` does not parse.
    """
    names = meta.find_undeclared_variables(environment().parse(source))
    return tuple(n for n in THINKING_KWARGS if n in names)


def detect_features(template: str | jinja2.Template, thinking: tuple[str, ...] | None = None) -> Features:
    """Probe what the template accepts (roles, content shapes, tools, reasoning, kwargs).

    Args:
        template: template source, or a template compiled by :func:`tmplc.render.compile_template`.
        thinking: its reasoning switches (:func:`thinking_kwargs`); found from the source when None.

    Raises:
        jinja2.TemplateSyntaxError: the source does not compile.
    """
    tpl = compile_template(template) if isinstance(template, str) else template
    if thinking is None:
        thinking = thinking_kwargs(template) if isinstance(template, str) else ()
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
    # A template that prints a content-block list as its Python repr does not render blocks.
    block_content = "«/1c»" in (ok(basic_b) or "") and "{'type': 'text'" not in (ok(basic_b) or "")
    m = s if string_content else b
    system = ok([m(0, "system"), m(1, "user"), m(2, "assistant")]) is not None
    # A template that never writes a tool call's name does not render tool calls.
    tool_args = tuple(
        mode for mode in ("dict", "json")
        if "«/1n0»" in (ok([m(0, "user"), m(1, "assistant", tool_calls=[tool_call(1, 0, mode == "json")])]) or "")
    )
    tool_calls = bool(tool_args)
    call = m(1, "assistant", tool_calls=[tool_call(1, 0, tool_args[:1] == ("json",))])
    tools = ok([m(0, "user"), m(1, "assistant")], TOOLS) is not None
    name = call["tool_calls"][0]["function"]["name"]  # a tool result carries the tool's name, as the proof draws it
    tool_role = tool_calls and ok([m(0, "user"), call, m(2, "tool", tool_call_id="call0", name=name), m(3, "assistant")]) is not None
    reasoning = ok([m(0, "user"), m(1, "assistant", reasoning_content=wrap(1, "r"))]) is not None
    return Features(system, tools, tool_calls, tool_role, reasoning, string_content, block_content,
                    thinking, tools_required, tool_args or ("dict",), tuple(sorted(extra.items())))


def with_prefixes(cases: list[Case]) -> list[Case]:
    """Each case, plus every prefix of it that ends with a (non-final) assistant message."""
    out = []
    for c in cases:
        out.append(c)
        for i, m in enumerate(c.messages[:-1]):
            if m["role"] == "assistant" and i > 0:
                out.append(Case(c.messages[: i + 1], c.tools, c.kwargs, False))
    return out
