"""``--prefix-preserving``: render history assistant turns as the model generated them.

Some templates render an assistant turn differently once later messages exist (Qwen3 drops the
reasoning of turns before the last user query; gpt-oss drops the analysis channel and ends the
turn with ``<|end|>`` instead of ``<|return|>``). Training on such a rendering teaches history
turns that the model never generated, and the rendering of a conversation is not an extension of
the rendering of its prefixes (what RL rollouts and incremental masking assume).

This module finds, on the probe conversations, the template conditions that make the difference
and fixes them to the value they take when the turn is the last message, generically:

* every ``{% if %}``/``{% elif %}`` test, and each operand of its top-level ``and``/``or`` (and
  of a parenthesised operand, recursively), is wrapped in a recording call, attributed to the
  message being rendered (the outermost enclosing loop variable that is a probe message, found
  by its sentinels);
* for every assistant message ``i`` of a probe, the values a test takes while rendering ``i`` in
  ``render(messages[:i+1])`` (the turn as generated) are compared with the values it takes in
  every later rendering (``i`` in history, or followed by the generation prompt);
* a test whose values differ, and that takes one constant value whenever a turn is rendered as
  generated, is replaced by that constant (``true``/``false``); when it is also evaluated for
  other roles, only for assistant messages (``(true if message.role == "assistant" else (T))``).
  Otherwise its operands are tried.

The result must then be prefix-preserving on the probes (:func:`tmplc.verification.prefix_break`
with ``generated=True``); else the template is refused (``not-prefix-preservable``) with the
conversation. The proof (:mod:`tmplc.prove`) checks the properties on generated conversations.
No rule names a model family: everything is read from renderings.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from .analysed import Analysed
from .conversations import FIELD_RE, Case, plain
from .reasons import CannotAugment, Reason
from .render import environment, render
from .syntax import Block, Tag, Template, Token, parse
from .syntax.cst import LineIndex
from .trace import loop_var
from .verification import Rendered, Renderings, outcome, prefix_break

MAX_ROUNDS = 3
_INDEX_RE = re.compile(r"«/?(\d+)[a-z]")


@dataclass(frozen=True)
class Test:
    """An ``if``/``elif`` test or one of its operands: ``[start, end)`` in the source, the loop
    variables in scope (outermost first) and the operands it splits into."""

    id: int
    start: int
    end: int
    loops: tuple[str, ...]
    parts: tuple[Test, ...] = ()


@dataclass(frozen=True)
class Change:
    """A test fixed to the value it takes when the turn is rendered as generated."""

    line: int
    text: str  # the original test
    value: bool
    guard: str = ""  # the loop variable whose role is checked, when other roles evaluate the test too

    def describe(self) -> str:
        value = "true" if self.value else "false"
        where = " for assistant messages" if self.guard else ""
        return f"line {self.line}: `{' '.join(self.text.split())}` -> {value}{where}"


@dataclass
class HistoryRewrite:
    """The prefix-preserving variant of a template: ``source`` (the original when ``changes`` is
    empty) and the tests it fixes."""

    source: str
    changes: list[Change] = field(default_factory=list)

    def declaration(self) -> str:
        """The rendering change, for the written header (one line, no ``#}``)."""
        if not self.changes:
            return ""
        text = "; ".join(c.describe() for c in self.changes)
        return text.replace("#}", "# }").replace("\n", " ")


def _split(toks: list[Token]) -> list[list[Token]]:
    """``toks`` (an expression, no whitespace tokens) split at its top-level ``and``/``or``; one
    part when there is none, or when the expression holds a top-level inline ``if``."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "OP" and t.text in "([{":
            depth += 1
        elif t.kind == "OP" and t.text in ")]}":
            depth -= 1
        elif depth == 0 and t.kind == "NAME" and t.text == "if":
            return [toks]
        if depth == 0 and t.kind == "NAME" and t.text in ("and", "or"):
            parts.append([])
            continue
        parts[-1].append(t)
    return parts if all(parts) else [toks]


def _parenthesised(toks: list[Token]) -> bool:
    if len(toks) < 3 or toks[0].text != "(" or toks[-1].text != ")":
        return False
    depth = 0
    for k, t in enumerate(toks):
        if t.kind == "OP" and t.text in "([{":
            depth += 1
        elif t.kind == "OP" and t.text in ")]}":
            depth -= 1
            if depth == 0 and k < len(toks) - 1:
                return False
    return True


def _tests(template: Template) -> list[Test]:
    """Every ``if``/``elif`` test inside a ``for`` loop (the only ones a message is attributed
    to), with its operands."""
    counter = [0]

    def build(toks: list[Token], loops: tuple[str, ...]) -> Test:
        tid = counter[0]
        counter[0] += 1
        inner = toks[1:-1] if _parenthesised(toks) else toks
        split = _split(inner)
        parts = tuple(build(p, loops) for p in split) if len(split) > 1 else ()
        return Test(tid, toks[0].start, toks[-1].end, loops, parts)

    out: list[Test] = []
    for node, stack in template.walk():
        if not isinstance(node, Block) or node.name != "if":
            continue
        scope = stack
        for k in range(len(stack) - 1, -1, -1):
            if stack[k].name == "macro":
                scope = stack[k + 1 :]
                break
        loops = tuple(v for b in scope if b.name == "for" and (v := loop_var(b)) is not None)
        if not loops:
            continue
        for clause in node.clauses:
            tag: Tag = clause.tag
            sig = tag.sig()
            if tag.name in ("if", "elif") and len(sig) > 1:
                out.append(build(sig[1:], loops))
    return out


def _flat(tests: list[Test]) -> list[Test]:
    out: list[Test] = []
    for t in tests:
        out.append(t)
        out += _flat(list(t.parts))
    return out


def _instrumented(source: str, tests: list[Test]) -> str:
    """``source`` with every test and operand wrapped in ``tmplc_rec(id, (expr), loop vars...)``."""

    def wrap(t: Test) -> str:
        body, pos = [], t.start
        for p in t.parts:
            body += [source[pos : p.start], wrap(p)]
            pos = p.end
        body.append(source[pos : t.end])
        return f"tmplc_rec({t.id}, ({''.join(body)}), {', '.join(t.loops)})"

    out, pos = [], 0
    for t in sorted(tests, key=lambda t: t.start):
        out += [source[pos : t.start], wrap(t)]
        pos = t.end
    out.append(source[pos:])
    return "".join(out)


Event = tuple[int, bool, int, str, int]  # test id, value, message index, role, which loop variable


def _attribute(values: tuple[Any, ...]) -> tuple[int, str, int] | None:
    """The probe message a test is evaluated for: the outermost loop variable that is a message
    (a mapping with a role whose fields carry sentinels): ``(index, role, variable position)``."""
    for k, v in enumerate(values):
        if isinstance(v, dict) and isinstance(v.get("role"), str):
            m = _INDEX_RE.search(repr(v))
            if m:
                return int(m.group(1)), v["role"], k
    return None


class _Recorder:
    def __init__(self, source: str):
        self.events: list[Event] = []
        self.template = environment().from_string(source, globals={"tmplc_rec": self})

    def __call__(self, tid: int, value: Any, *loops: Any) -> Any:
        who = _attribute(loops)
        if who is not None:
            self.events.append((tid, bool(value), *who))
        return value

    def run(self, case: Case, k: int, agp: bool) -> list[Event] | None:
        self.events = []
        try:
            render(self.template, case.messages[:k], case.tools, add_generation_prompt=agp, **case.kwargs)
        except Exception:  # noqa: BLE001 - a conversation the template refuses says nothing
            return None
        return self.events


def _per_message(events: list[Event]) -> dict[int, dict[int, list[bool]]]:
    out: dict[int, dict[int, list[bool]]] = {}
    for tid, value, index, _, _ in events:
        out.setdefault(index, {}).setdefault(tid, []).append(value)
    return out


@dataclass
class _Evidence:
    sensitive: dict[int, Case] = field(default_factory=dict)  # test → a probe where it differs
    final: dict[int, set[bool]] = field(default_factory=dict)  # test → values when rendered as generated
    roles: dict[int, set[str]] = field(default_factory=dict)  # test → roles it is evaluated for
    var: dict[int, int] = field(default_factory=dict)  # test → loop variable position of assistant messages


def _evidence(source: str, tests: list[Test], cases: list[Case]) -> _Evidence:
    rec = _Recorder(_instrumented(source, tests))
    ev = _Evidence()
    for case in cases:
        n = len(case.messages)
        runs: dict[tuple[int, bool], dict[int, dict[int, list[bool]]]] = {}
        for k in range(1, n + 1):
            for agp in (False, True):
                events = rec.run(case, k, agp)
                if events is None:
                    continue
                runs[(k, agp)] = _per_message(events)
                for tid, _, _, role, var in events:
                    ev.roles.setdefault(tid, set()).add(role)
                    if role == "assistant":
                        ev.var.setdefault(tid, var)
        for i, m in enumerate(case.messages):
            if m.get("role") != "assistant" or (i + 1, False) not in runs:
                continue
            final = runs[(i + 1, False)].get(i, {})
            for tid, values in final.items():
                ev.final.setdefault(tid, set()).update(values)
            for (k, agp), per in runs.items():
                if k < i + 1 or (k == i + 1 and not agp):
                    continue
                seen = per.get(i, {})
                for tid in set(final) & set(seen):  # evaluated in both; a test evaluated in one only
                    # follows from another test (e.g. one taken earlier), or has no value as generated
                    if any(a != b for a, b in zip(final[tid], seen[tid])):
                        ev.sensitive.setdefault(tid, Case(case.messages[:k], case.tools, case.kwargs, agp))
    return ev


def _choose(tests: list[Test], ev: _Evidence, source: str, loops_of: dict[int, tuple[str, ...]],
            lines: LineIndex) -> list[tuple[Test, Change]]:
    """The innermost sensitive tests (a sensitive test whose operands all agree is fixed itself),
    each fixed when it takes one value whenever the turn is rendered as generated."""
    out: list[tuple[Test, Change]] = []

    def visit(t: Test) -> None:
        if t.id not in ev.sensitive:
            return
        if any(p.id in ev.sensitive for p in t.parts):
            for p in t.parts:
                visit(p)
            return
        values = ev.final.get(t.id, set())
        if len(values) == 1:
            guard = ""
            if ev.roles.get(t.id, set()) - {"assistant"}:
                guard = loops_of[t.id][ev.var.get(t.id, 0)]
            out.append((t, Change(lines.position(t.start)[0], source[t.start : t.end], values.pop(), guard)))

    for t in tests:
        visit(t)
    return out


def _apply(source: str, chosen: list[tuple[Test, Change]]) -> str:
    out, pos = [], 0
    for t, c in sorted(chosen, key=lambda tc: tc[0].start):
        value = "true" if c.value else "false"
        text = f'({value} if {c.guard}.role == "assistant" else ({c.text}))' if c.guard else value
        out += [source[pos : t.start], text]
        pos = t.end
    out.append(source[pos:])
    return "".join(out)


def _breaks(source: str, cases: list[Case], label: str) -> tuple[Case, int] | None:
    """The first probe on which ``source`` is not prefix-preserving and its assistant message
    that breaks it (``prefix_break`` with ``generated=True``), or None."""
    compiled = Analysed(source, label).compiled
    for case in cases:
        k = prefix_break(Renderings(compiled, case), generated=True)
        if k is not None:
            return case, k
    return None


def _variants(cases: list[Case]) -> list[Case]:
    """The probes, plus each probe whose assistant messages with tool calls or reasoning have
    empty content (the probes' fields always hold sentinels, so a test on the content is always
    true there)."""
    out = list(cases)
    for case in cases:
        msgs = [{**m, "content": ""} if m.get("role") == "assistant" and isinstance(m.get("content"), str)
                and (m.get("tool_calls") or m.get("reasoning_content")) else m for m in case.messages]
        if msgs != case.messages:
            out.append(Case(msgs, case.tools, case.kwargs, case.add_generation_prompt))
    return out


def prefix_preserving(original: Analysed, extra: list[Case] | tuple[Case, ...] = ()) -> HistoryRewrite:
    """The prefix-preserving variant of ``original`` (see the module docstring); ``extra``:
    conversations to learn from besides the probes (the proof's counterexamples).

    Returns:
        :class:`HistoryRewrite`; ``source`` is the original text, unchanged, when it already is.

    Raises:
        CannotAugment: ``not-prefix-preservable``, with the probe conversation that still breaks.
    """
    cases = _variants([c for c in original.probes if c.messages]) + list(extra)
    source = original.source
    changes: list[Change] = []
    for _ in range(MAX_ROUNDS):
        broken = _breaks(source, cases, original.label)
        if broken is None:
            return HistoryRewrite(source, changes)
        template = parse(source, original.label)
        tests = _tests(template)
        flat = _flat(tests)
        ev = _evidence(source, tests, cases)
        chosen = _choose(tests, ev, source, {t.id: t.loops for t in flat}, LineIndex(source))
        if not chosen:
            break
        source = _apply(source, chosen)
        changes += [c for _, c in chosen]
        try:
            Analysed(source, original.label).compiled  # noqa: B018
        except Exception as exc:  # noqa: BLE001 - a rewrite jinja2 rejects: refuse, never write it
            raise CannotAugment(Reason.NOT_PREFIX_PRESERVABLE, f"fixing a history condition gives a template "
                                f"jinja2 rejects: {exc}") from None
    broken = _breaks(source, cases, original.label)
    if broken is None:
        return HistoryRewrite(source, changes)
    case, k = broken
    raise CannotAugment(Reason.NOT_PREFIX_PRESERVABLE,
                        f"assistant message {k}: rendered as the last message it is not how the template renders it "
                        "once later messages exist, and no condition of the template that makes the difference "
                        "can be fixed to its value as generated", case)


_JOINT_RE = re.compile(r"(?<=[>\]])(?=<[^<>\s]+>|\[[^\[\]\s]+\])")


def lines(text: str, width: int = 80) -> list[str]:
    """``text`` split into lines for a diff: at its newlines, and a line longer than ``width``
    also where one special token follows another (``<|end|>`` | ``<|start|>``), as templates
    that write no newline (gpt-oss) would otherwise be one line."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if len(line) <= width:
            out.append(line)
            continue
        parts = _JOINT_RE.split(line)
        out += [p + ("" if p.endswith("\n") else "\n") for p in parts[:-1]] + [parts[-1]]
    return out


def rendering_diff(original: Any, changed: Any, case: Case, label: str = "") -> str:
    """The rendering change on ``case`` as a unified diff of :func:`lines` (``""`` when none)."""
    a, b = outcome(original, case), outcome(changed, case)
    if not isinstance(a, Rendered) or not isinstance(b, Rendered) or a.text == b.text:
        return ""
    return "".join(difflib.unified_diff(lines(a.text), lines(b.text), f"{label} (original)",
                                        f"{label} (--prefix-preserving)", n=1))


_KIND = {"c": "content", "r": "reasoning", "a": "argument"}
_FIELD_NAME_RE = re.compile(r"(\d+)([a-z])")


def _label(name: str) -> str:
    m = _FIELD_NAME_RE.match(name)
    return f"{_KIND.get(m.group(2), 'field')} {m.group(1)}" if m else name


def readable(case: Case) -> Case:
    """``case`` without sentinels, each empty field filled with its kind and message index
    (``content 3``, ``reasoning 3``), for a diff a reader can follow."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return FIELD_RE.sub(lambda m: m.group(2) or _label(m.group(1)), value)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return plain(Case(fill(case.messages), case.tools, case.kwargs, case.add_generation_prompt))


def change_report(original: Analysed, changed: Any, label: str = "") -> str:
    """The rendering change on the smallest probe conversation it affects, as a unified diff of
    its readable form (:func:`readable`); ``""`` when no probe shows one."""
    for case in sorted(original.probes, key=lambda c: (len(c.messages), len(repr(c)))):
        diff = rendering_diff(original.compiled, changed, case, label)
        if diff:
            return rendering_diff(original.compiled, changed, readable(case), label) or diff
    return ""


__all__ = ["Change", "HistoryRewrite", "change_report", "prefix_preserving", "readable", "rendering_diff"]
