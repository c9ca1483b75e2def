"""Render chat templates exactly as transformers does.

:func:`environment` is the one place that builds the Jinja environment: the same settings,
filters and globals as ``transformers.utils.chat_template_utils`` (transformers 5.x):
``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with ``loopcontrols``,
a ``{% generation %}`` extension that records character spans (the ``AssistantTracker``
pattern), ``tojson`` with transformers' signature, ``raise_exception``, ``strftime_now``,
``dict`` and a ``namespace`` that refuses underscore-prefixed names. :func:`render` returns
``(text, spans)``; a test compares both with ``render_jinja_template`` over the corpus.

Inside :func:`budget` (what ``augment`` runs in) every render is limited in time and size: it
raises :class:`RenderTimeout` once the budget's deadline passes and :class:`RenderTooLarge` when
its output (or a ``*``/``**`` result) exceeds :data:`MAX_RENDER_CHARS`. Outside a budget,
rendering is unlimited, as in transformers (lint renders a small fixed probe set).
"""

from __future__ import annotations

import contextvars
import json
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import InputError

Span = tuple[int, int]

# The list of rendered blocks and the list of recorded spans of the render in progress.
# The index (in source order) of each recorded span's {% generation %} tag, while render_located() runs.
_BLOCKS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("tmplc_blocks", default=None)
_TRACKING: contextvars.ContextVar[tuple[list[str], list[Span]] | None] = contextvars.ContextVar(
    "tmplc_tracking", default=None
)

REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class GenerationExtension(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body unchanged and, while a
    render is tracked, records the body's ``(start, end)`` character offsets in the output.

    Offsets are computed the way transformers' ``AssistantTracker`` does: from the length of
    the output blocks already yielded by the top-level template, so a marker inside a macro or
    a ``{% set %}`` block records a wrong offset there too.
    """

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        # The tag's index among the template's generation tags, in source order (jinja2 parses
        # tags in the order they appear; one Parser per compiled template).
        index = getattr(parser, "_tmplc_generation_tags", 0)
        setattr(parser, "_tmplc_generation_tags", index + 1)  # noqa: B010 - an attribute jinja2's Parser does not declare
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_support", [jinja2.nodes.Const(index)])
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _support(self, index, caller):
        rv = caller()
        state = _TRACKING.get()
        if state is not None:
            blocks, spans = state
            start = len("".join(blocks))
            spans.append((start, start + len(rv)))
            located = _BLOCKS.get()
            if located is not None:
                located.append(index)
        return rv


class TraceExtension(jinja2.ext.Extension):
    """``{% tmplc_mark a, b, ... %}``: emits ``TRACE_OPEN + ",".join(args) + TRACE_CLOSE``.

    Only the tracer (:mod:`tmplc.trace`) inserts this tag, into an instrumented copy of a
    template; it is never written to a user's file. An opening mark (``b`` is ``0``) names its
    set of atom expressions by number: ``id, 0, k, atoms...`` where set ``k`` first occurs in the
    text, ``id, 0, k`` after that. The parser reads each set once and gives every later mark
    the same expression nodes, so the mark compiles to the code its atoms written out compile
    to (the same few sets recur at every site of an instrumented copy; lexing and parsing them
    again and again was most of its compile time). Sharing the nodes is safe because jinja2's
    code generator does not modify the tree; its optimizer would, and the trace environment
    runs without it (:func:`environment`).
    """

    tags = {"tmplc_mark"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        args = [parser.parse_expression()]
        while parser.stream.skip_if("comma"):
            args.append(parser.parse_expression())
        if len(args) > 2:  # an opening mark: id, 0, the number of its atom set[, the set's atoms]
            sets = parser.__dict__.setdefault("tmplc_atom_sets", {})  # this parse's sets, by number
            number = args.pop(2)
            if not isinstance(number, jinja2.nodes.Const):
                parser.fail("tmplc_mark: the third argument of an opening mark is the number of its atom set", lineno)
            if len(args) > 2:
                sets[number.value] = args[2:]
            elif number.value in sets:
                args += sets[number.value]
            else:
                parser.fail(f"tmplc_mark: atom set {number.value} is used before it is defined", lineno)
        return jinja2.nodes.Output([self.call_method("_mark", args)]).set_lineno(lineno)

    @staticmethod
    def _mark(*args):
        return TRACE_OPEN + ",".join("1" if a is True else "0" if a is False else str(a) for a in args) + TRACE_CLOSE


TRACE_OPEN = "\U000f0001"
TRACE_CLOSE = "\U000f0002"


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


class _TemplateDict:
    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    def __init__(*args, **kwargs):  # noqa: N805 - same signature trick as jinja2's Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}."
            )


MAX_RENDER_CHARS = 4_000_000  # characters of one rendering (or of one string/list a template builds)


class RenderLimit(BaseException):
    """A render stopped by tmplc's budget, not by the template.

    A ``BaseException`` (like ``KeyboardInterrupt``) on purpose: every ``except Exception`` that
    turns a template's own error into an outcome must let it through, up to ``augment``.

    Attributes:
        reason: ``"render-timeout"`` or ``"render-too-large"`` (a :class:`tmplc.reasons.Reason` value).
        detail: one line saying what was exceeded.
        call: ``(messages, tools, kwargs, add_generation_prompt)`` of the render that was cut
            off, or None when the budget ran out between renders.
    """

    reason = ""

    def __init__(self, detail: str, call: tuple | None = None):
        super().__init__(detail)
        self.detail = detail
        self.call = call


class RenderTimeout(RenderLimit):
    """The budget's deadline passed during (or before) a render."""

    reason = "render-timeout"


class RenderTooLarge(RenderLimit):
    """A rendering, or a value a template built, exceeded :data:`MAX_RENDER_CHARS` characters."""

    reason = "render-too-large"


@dataclass
class Budget:
    """Limits of the renders in a :func:`budget` block: ``seconds`` of wall-clock time in all,
    ending at ``deadline`` (``time.monotonic()``), and ``max_chars`` per rendering."""

    seconds: float
    deadline: float
    max_chars: int = MAX_RENDER_CHARS
    call: tuple | None = None  # the render in progress
    rendering: bool = False
    expired: bool = False

    def timeout(self) -> RenderTimeout:
        """The :class:`RenderTimeout` to raise, naming the render in progress."""
        return RenderTimeout(f"rendering exceeded the time budget of {self.seconds:g} s", self.call)

    def check(self) -> None:
        """Raise :class:`RenderTimeout` when the deadline has passed."""
        if self.expired or time.monotonic() > self.deadline:
            self.expired = True
            raise self.timeout()


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("tmplc_budget", default=None)


def _on_alarm(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    b = _BUDGET.get()
    if b is not None:
        b.expired = True
        if b.rendering:  # interrupts a loop that makes no call and yields no output
            raise b.timeout()


@contextmanager
def budget(seconds: float | None, max_chars: int = MAX_RENDER_CHARS) -> Iterator[Budget | None]:
    """Limit every :func:`render` in the block to ``seconds`` in all and ``max_chars`` each.

    Args:
        seconds: wall-clock seconds for the whole block (None or 0: no time limit, size only).
        max_chars: the largest rendering, string or list a template may build, in characters.

    The deadline is checked at every call a template makes, every output block and, in the main
    thread, by a ``SIGALRM`` timer (when no other ``SIGALRM`` handler is installed), which also
    interrupts loops that neither call nor output anything. In other threads such a loop runs
    until its next call or output. Renders raise :class:`RenderTimeout` / :class:`RenderTooLarge`.
    """
    outer = _BUDGET.get()
    b = Budget(seconds or math.inf, time.monotonic() + seconds if seconds else math.inf, max_chars)
    if outer is not None:  # a nested budget never extends the one it runs in
        b.seconds, b.deadline = min(b.seconds, outer.seconds), min(b.deadline, outer.deadline)
        b.max_chars = min(b.max_chars, outer.max_chars)
    token = _BUDGET.set(b)
    alarm = seconds is not None and seconds > 0 and outer is None and hasattr(signal, "setitimer") \
        and threading.current_thread() is threading.main_thread() \
        and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
    if alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)  # type: ignore[arg-type]  # alarm implies seconds
    try:
        yield b
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        _BUDGET.reset(token)


def _too_large(size: int, b: Budget) -> RenderTooLarge:
    return RenderTooLarge(f"a rendering (or a value the template built) of {size} characters exceeds "
                          f"the limit of {b.max_chars}", b.call)


def _binop_size(operator: str, left: Any, right: Any) -> int:
    """Size of the result of ``left * right`` (a repeated string or list: its length) or
    ``left ** right`` (integers: its decimal digits), estimated before computing it; 0 otherwise."""
    if operator == "*" and isinstance(right, (str, list, tuple)):
        left, right = right, left
    if operator == "*" and isinstance(left, (str, list, tuple)) and isinstance(right, int):
        return len(left) * right
    if operator == "**" and type(left) is int and type(right) is int and abs(left) > 1 and right > 0:
        return int(right * math.log10(abs(left))) + 1
    return 0


class _Sandbox(ImmutableSandboxedEnvironment):
    """transformers' sandbox, plus the :func:`budget` checks: the deadline at every call, and
    the size of ``*`` and ``**`` results (jinja2's documented ``intercepted_binops`` hook).

    A ``*`` or ``**`` result over :data:`MAX_RENDER_CHARS` characters (or digits) is refused
    before it is computed: :class:`RenderTooLarge` inside a budget, else ``OverflowError`` (a
    template error, like jinja2's own ``MAX_RANGE``), so ``{{ 9 ** (9 ** 9) }}`` cannot hang lint.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja2's signature
        """jinja2's sandboxed call, after checking the budget's deadline (raises RenderTimeout)."""
        b = _BUDGET.get()
        if b is not None:
            b.check()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context, operator, left, right):
        """``left * right`` or ``left ** right``, refused when the result would exceed the size
        limit (RenderTooLarge in a budget, else OverflowError)."""
        size = _binop_size(operator, left, right)
        b = _BUDGET.get()
        if size > (b.max_chars if b is not None else MAX_RENDER_CHARS):
            if b is not None:
                raise _too_large(size, b)
            raise OverflowError(f"the result of {operator} would have {size} characters (limit {MAX_RENDER_CHARS})")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=2)
def environment(trace: bool = False) -> ImmutableSandboxedEnvironment:
    """Build the Jinja environment transformers uses for chat templates.

    Args:
        trace: also enable the internal ``tmplc_mark`` tag used by the tracer. Its environment
            compiles without jinja2's constant-folding optimizer (``optimized=False``, which
            renders the same text): an instrumented copy is some 15 times the template's size,
            mostly the atoms' nested expressions, which the optimizer walks again at every level
            (a third of the copy's compile time); each copy renders a few dozen probes.

    Returns:
        A cached ``ImmutableSandboxedEnvironment``; do not mutate it.
    """
    extensions: list[Any] = [GenerationExtension, jinja2.ext.loopcontrols]
    if trace:
        extensions.append(TraceExtension)
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=extensions, optimized=not trace)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


@lru_cache(maxsize=256)
def compile_template(source: str, trace: bool = False) -> jinja2.Template:
    """Compile ``source`` in :func:`environment`; raises ``jinja2.TemplateSyntaxError``."""
    return environment(trace).from_string(source)


def merge_spans(spans: Sequence[Span]) -> list[Span]:
    """Union of generation spans as sorted disjoint ``[start, end)`` runs (characters; touching
    spans merged, empty ones dropped)."""
    out: list[list[int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def jinja_error(exc: jinja2.TemplateSyntaxError, source: str, label: str) -> InputError:
    """The one-line :class:`InputError` for a jinja2 syntax error.

    jinja2 knows the line only: the column is the first non-blank character of that line.
    """
    line = exc.lineno or 1
    lines = source.split("\n")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return InputError(f"Jinja syntax error: {exc.message}", label, line, len(text) - len(text.lstrip()) + 1, "syntax")


def compile_or_error(source: str, label: str) -> jinja2.Template:
    """:func:`compile_template`, raising :class:`InputError` (``label:line:col``) on a syntax error."""
    try:
        return compile_template(source)
    except jinja2.TemplateSyntaxError as exc:
        raise jinja_error(exc, source, label) from None


def plain_data(value: Any) -> Any:
    """Rebuild ``value`` from plain JSON types, as transformers' ``_plain_template_data`` does."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, dict):
        return {plain_data(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_data(v) for v in value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return f"<{type(value).__name__}>"


def drop_none(messages: list[dict]) -> list[dict]:
    """Each message without its keys whose value is None, as transformers' ``apply_chat_template``
    normalizes a conversation before rendering (``content=None`` becomes a missing key; OpenAI-style
    APIs return such messages). Non-dict messages are kept as they are."""
    return [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in messages]


def alias_reasoning(messages: list[dict]) -> list[dict]:
    """Give a message with any reasoning field both ``thinking`` and ``reasoning_content``
    (transformers' ``_alias_reasoning_fields``; gpt-oss templates read ``thinking``)."""
    out = []
    for message in messages:
        if isinstance(message, dict):
            reasoning = next((message[k] for k in REASONING_FIELDS if message.get(k) is not None), None)
            if reasoning is not None:
                message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


def render(
    template: str | jinja2.Template,
    messages: list[dict],
    tools: list[dict] | None = None,
    documents: list[dict] | None = None,
    add_generation_prompt: bool = False,
    **kwargs: Any,
) -> tuple[str, list[Span]]:
    """Render a chat template the way ``apply_chat_template`` does.

    Args:
        template: template source or a template compiled by :func:`compile_template`.
        messages: the conversation, a list of message dicts (``role``, ``content``, ...).
        tools, documents: passed to the template as transformers passes them.
        add_generation_prompt: the generation-prompt flag.
        **kwargs: extra template kwargs (``enable_thinking``, ``bos_token``, ...).

    Returns:
        ``(text, spans)``: the rendered text and the ``(start, end)`` character offsets recorded
        by each ``{% generation %}`` block, in the order they were rendered.

    Raises:
        jinja2.TemplateError (or any exception the template raises), as transformers would;
        :class:`RenderTimeout` / :class:`RenderTooLarge` inside a :func:`budget`.
    """
    compiled = compile_template(template) if isinstance(template, str) else template
    chat = alias_reasoning(plain_data(drop_none(messages)))
    blocks: list[str] = []
    spans: list[Span] = []
    token = _TRACKING.set((blocks, spans))
    try:
        stream = compiled.generate(messages=chat, tools=plain_data(tools), documents=plain_data(documents),
                                   add_generation_prompt=add_generation_prompt, **plain_data(kwargs))
        b = _BUDGET.get()
        if b is None:
            blocks.extend(stream)
        else:
            _generate_within(b, stream, blocks, (messages, tools, kwargs, add_generation_prompt))
    finally:
        _TRACKING.reset(token)
    return "".join(blocks), spans


def render_located(template: str | jinja2.Template, messages: list[dict], tools: list[dict] | None = None,
                   add_generation_prompt: bool = False, **kwargs: Any) -> tuple[str, list[Span], list[int]]:
    """:func:`render`, plus for each span the index of the ``{% generation %}`` tag that recorded
    it, counted from 0 in source order (the n-th ``Block`` named ``generation`` of the lossless
    CST: lint rules point at the exact tag, two blocks on one line included). Raises as
    :func:`render`."""
    located: list[int] = []
    token = _BLOCKS.set(located)
    try:
        text, spans = render(template, messages, tools, add_generation_prompt=add_generation_prompt, **kwargs)
    finally:
        _BLOCKS.reset(token)
    return text, spans, located


def _generate_within(b: Budget, stream: Iterator[str], blocks: list[str], call: tuple) -> None:
    """Collect ``stream`` into ``blocks`` under budget ``b`` (deadline, output size)."""
    b.call = call
    b.check()
    size = 0
    try:
        b.rendering = True
        for block in stream:
            blocks.append(block)
            size += len(block)
            if size > b.max_chars:
                raise _too_large(size, b)
            if b.expired or time.monotonic() > b.deadline:
                b.check()
    finally:
        b.rendering = False
        stream.close()  # type: ignore[attr-defined]  # jinja2's generate() returns a generator


GENERATION_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_markers(source: str) -> bool:
    """True when the template carries ``{% generation %}`` (the regex transformers uses)."""
    return bool(GENERATION_RE.search(source))


RenderFn = Callable[..., tuple[str, list[Span]]]
