"""The one verification core: render a conversation, compare two renderings, compare masks.

Every check tmplc makes goes through here, with one exception policy: an exception raised by a
template (any ``Exception``: ``TemplateError``, ``TypeError`` from ``'a' + None``...) is an
*outcome* (:class:`Raised`, its type name and message), compared like text. Used by locate (the
oracle of each probe), the proof (:mod:`tmplc.prove`), the lint rules and the tests.

* :func:`same_rendering` — two templates render every prefix of a conversation, with and without
  the generation prompt, identically (or raise identically);
* :func:`mask_diff` — a rendering's generation spans against the oracle's expected masks, per
  turn, naming the template node that wrote each wrong character;
* :func:`check_case` — both, plus the oracle, for one conversation: what the proof and the mask
  rules ask.

Offsets are characters of the rendered text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from .conversations import Case, Span
from .conversations import field_spans
from .oracle import Oracle, Problem, appended, expected_masks, with_appended_stop
from .trace import Instrumented, TraceError, read_trace


@dataclass(frozen=True)
class Rendered:
    """A rendering: ``text`` and the ``{% generation %}`` spans in the order they were rendered."""

    text: str
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Raised:
    """A template that raised: the exception's type name and message."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


Outcome = Rendered | Raised


class TemplateRaised(Exception):
    """Raised by :meth:`Renderings.text` where the template raised (the oracle's render callback)."""


def outcome(template: Any, case: Case, messages: list[dict] | None = None, agp: bool | None = None) -> Outcome:
    """Render ``messages`` (default: the whole conversation) of ``case`` with ``template``.

    Args:
        template: a compiled template (:func:`tmplc.render.compile_template`) or its source.
        case: the conversation with its tools and kwargs.
        agp: the generation-prompt flag (default: :attr:`Case.full_agp`).

    Returns:
        :class:`Rendered` or :class:`Raised`; never raises for a template error.
    """
    try:
        text, spans = case.render(template, messages, agp)
    except Exception as exc:  # noqa: BLE001 - one exception policy: a template error is an outcome
        return Raised(type(exc).__name__, str(exc))
    return Rendered(text, tuple(spans))


class Renderings:
    """Memoised renderings of the prefixes of one conversation by one template.

    ``get(k, agp)`` renders ``case.messages[:k]`` once per flag. Oracle callbacks take message
    lists; every list the oracle asks for is a prefix, identified by its length.
    """

    def __init__(self, template: Any, case: Case, policy: str = "as-rendered"):
        self.template = template
        self.case = case
        self.policy = policy  # the masking policy of the oracle (tmplc.oracle.POLICIES)
        self._cache: dict[tuple[int, bool], Outcome] = {}

    def get(self, k: int, agp: bool) -> Outcome:
        key = (k, agp)
        out = self._cache.get(key)
        if out is None:
            out = outcome(self.template, self.case, self.case.messages[:k], agp)
            self._cache[key] = out
        return out

    def full(self) -> Outcome:
        """The full rendering (the generation prompt as :attr:`Case.full_agp`)."""
        return self.get(len(self.case.messages), self.case.full_agp)

    def text(self, messages: list[dict], agp: bool) -> str:
        """Text of a prefix (memoised) or of another message list, for :func:`tmplc.oracle.expected_masks`.

        Raises:
            TemplateRaised: the template raised on that prefix.
        """
        k = len(messages)
        if messages != self.case.messages[:k]:  # not a prefix (the oracle's probe after a final turn)
            out = outcome(self.template, self.case, messages, agp)
        else:
            out = self.get(k, agp)
        if isinstance(out, Raised):
            raise TemplateRaised(str(out))
        return out.text

    def oracle(self) -> Oracle | None:
        """The oracle's expected masks, or None when the template raises on a prefix it needs."""
        try:
            return expected_masks(self.text, self.case, self.policy)
        except TemplateRaised:
            return None


@dataclass(frozen=True)
class RenderDiff:
    """The first rendering where two templates differ."""

    messages: int  # the prefix length
    agp: bool
    a: Outcome
    b: Outcome

    def describe(self) -> str:
        def what(o: Outcome) -> str:
            return str(o) if isinstance(o, Raised) else "text"

        return (f"rendering of messages[:{self.messages}] (add_generation_prompt={self.agp}) changed: "
                f"original gives {what(self.a)}, training gives {what(self.b)}")

    @property
    def first_difference(self) -> int:
        """Character offset of the first difference of two texts (0 when one raised)."""
        if isinstance(self.a, Raised) or isinstance(self.b, Raised):
            return 0
        x, y = self.a.text, self.b.text
        return next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))


def _same(a: Outcome, b: Outcome) -> bool:
    if isinstance(a, Rendered) and isinstance(b, Rendered):
        return a.text == b.text
    return a == b


def same_rendering(a: Renderings, b: Renderings, prefixes: bool = True, append: str = "") -> RenderDiff | None:
    """Compare two templates on one conversation (``a`` and ``b`` render the same case).

    Args:
        prefixes: compare every prefix ``messages[:k]``, each with and without the generation
            prompt (the proof); False: the full conversation with its own flag only.
        append: ``--append-stop``'s text: where ``messages[:k]`` ends with an assistant message
            and there is no generation prompt, ``b`` must render ``a``'s text with ``append``
            inserted once after the last message's fields (TRL PR #6044), else identical.

    Returns:
        None when every rendering is identical text or the same raised error; else the first
        :class:`RenderDiff`.
    """
    n = len(a.case.messages)
    keys = [(k, agp) for k in range(1, n + 1) for agp in (False, True)] if prefixes else [(n, a.case.full_agp)]
    msgs = a.case.messages
    for k, agp in keys:
        x, y = a.get(k, agp), b.get(k, agp)
        if append and not agp and msgs[k - 1].get("role") == "assistant" and isinstance(x, Rendered) \
                and isinstance(y, Rendered):
            fields = field_spans(x.text).get(k - 1, [])
            if appended(x.text, y.text, append, max((e for _, e in fields), default=0)):
                continue
        if not _same(x, y):
            return RenderDiff(k, agp, x, y)
    return None


class DefectKind(str, Enum):
    """What a wrong mask character is: see :func:`mask_diff`."""

    CUE = "cue"  # masked prompt text right before a turn (the generation prompt)
    OTHER_ROLE = "other-role"  # masked text outside every assistant turn
    STOP_TOKEN = "stop-token"  # unmasked text at the end of a turn (the stop)
    FIELD = "field"  # unmasked generated text inside a turn


@dataclass(frozen=True)
class MaskDefect:
    """A run of characters masked wrongly: ``span`` in the rendering, ``turn`` the assistant
    message index (-1: none), ``node`` the source offset of the template node that wrote it
    (None without a trace)."""

    kind: DefectKind
    span: Span
    turn: int
    text: str
    node: int | None = None

    @property
    def missing(self) -> bool:
        """Expected but not masked (as opposed to masked but not expected)."""
        return self.kind in (DefectKind.STOP_TOKEN, DefectKind.FIELD)


def mask_of(spans: tuple[Span, ...] | list[Span]) -> set[int]:
    """Character offsets covered by ``spans``."""
    return {c for a, b in spans for c in range(a, b)}


def runs(chars: list[int]) -> list[Span]:
    """Maximal runs of consecutive offsets of a sorted list, as half-open spans."""
    out: list[list[int]] = []
    for c in chars:
        if out and c == out[-1][1]:
            out[-1][1] = c + 1
        else:
            out.append([c, c + 1])
    return [(a, b) for a, b in out]


def mask_diff(expected: Oracle, spans: tuple[Span, ...] | list[Span], owner: dict[int, int] | None = None) -> list[MaskDefect]:
    """Compare generation ``spans`` of ``expected.text`` with the oracle's masks, run by run.

    A masked run that ends where a turn starts is the turn's cue; any other masked run outside
    the expected mask belongs to another role. An unmasked run of a turn that reaches the turn's
    end is its stop; any other is a field. ``owner`` maps a character offset to the source offset
    of the node that wrote it (:func:`owners`).
    """
    actual, want = mask_of(spans), expected.mask()
    text, owner = expected.text, owner or {}
    out: list[MaskDefect] = []
    for a, b in runs(sorted(actual - want)):
        turn = next((i for i, (s, _) in expected.turns.items() if b == s), None)
        kind = DefectKind.CUE if turn is not None else DefectKind.OTHER_ROLE
        out.append(MaskDefect(kind, (a, b), -1 if turn is None else turn, text[a:b], owner.get(a)))
    for a, b in runs(sorted(want - actual)):
        turn = next((i for i, (s, e) in expected.turns.items() if s <= a < e), -1)
        end = expected.turns.get(turn, (0, 0))[1]
        kind = DefectKind.STOP_TOKEN if b == end else DefectKind.FIELD
        out.append(MaskDefect(kind, (a, b), turn, text[a:b], owner.get(a)))
    return out


def owners(inst: Instrumented, case: Case, text: str) -> dict[int, int]:
    """Character offset of the full rendering → source offset of the node that wrote it, from a
    trace of the instrumented template; empty when the trace does not match ``text``."""
    try:
        raw = case.render(inst.compiled)[0]
        trace = read_trace(inst, raw)
    except (TraceError, Exception):  # noqa: BLE001 - no attribution, never a failure
        return {}
    if trace.text != text:
        return {}
    return {c: inst.sites[e.site].node.start for e in trace.emissions for c in range(e.start, e.end)}


def mark_spans(text: str, spans: list[Span], open_: str = "⟦", close: str = "⟧") -> str:
    """``text`` with each span wrapped in ``open_``/``close`` (for reports)."""
    out, prev = [], 0
    for a, b in sorted(spans):
        out += [text[prev:a], open_, text[a:b], close]
        prev = b
    out.append(text[prev:])
    return "".join(out)


def merge_spans(spans: tuple[Span, ...] | list[Span]) -> list[Span]:
    """Union of spans as sorted disjoint spans (touching spans are merged)."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


@dataclass
class CaseCheck:
    """What :func:`check_case` found on one conversation.

    ``valid``: the original renders the full conversation; ``render_diff``: the training template
    renders some prefix differently; ``oracle``: the expected masks (None when a prefix raises);
    ``problem``: the oracle cannot give a correct mask; ``rendered``: the training template's
    full rendering; ``defects``: its mask errors.
    """

    valid: bool = False
    render_diff: RenderDiff | None = None
    oracle: Oracle | None = None
    problem: Problem | None = None
    rendered: Rendered | None = None
    defects: list[MaskDefect] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.render_diff is None and self.problem is None and not self.defects

    def mask_message(self) -> str:
        """One line: how many characters are missing from and added to the mask, and where."""
        text = self.oracle.text if self.oracle else ""
        missing = sorted(c for d in self.defects if d.missing for c in range(*d.span))
        extra = sorted(c for d in self.defects if not d.missing for c in range(*d.span))
        what = []
        if missing:
            what.append(f"{len(missing)} expected characters not masked (first at {missing[0]}: {text[missing[0]:missing[0] + 20]!r})")
        if extra:
            what.append(f"{len(extra)} characters masked that the model does not generate (first at {extra[0]}: {text[extra[0]:extra[0] + 20]!r})")
        return "; ".join(what)

    def mask_detail(self) -> str:
        """The rendering with expected and actual spans marked ⟦…⟧."""
        if self.oracle is None or self.rendered is None:
            return ""
        text = self.oracle.text
        return ("expected ⟦…⟧:\n" + mark_spans(text, list(self.oracle.turns.values()))
                + "\nactual ⟦…⟧:\n" + mark_spans(text, merge_spans(self.rendered.spans)))


def check_case(original: Any, training: Any, case: Case, append: str = "", policy: str = "as-rendered") -> CaseCheck:
    """Check one conversation: unchanged rendering, then masks against the oracle.

    Args:
        original: the shipped template, compiled. training: the template with markers, compiled.
        case: the conversation.
        append: ``--append-stop``'s text (see :func:`same_rendering`); the expected masks then
            cover it after a final turn without a stop (:func:`tmplc.oracle.with_appended_stop`).
        policy: the oracle's masking policy (:func:`tmplc.oracle.expected_masks`).

    Returns:
        :class:`CaseCheck`; the first failing property stops the check.
    """
    return check_renderings(Renderings(original, case, policy), Renderings(training, case, policy), append=append)


def check_renderings(orig: Renderings, train: Renderings, owner: Callable[[str], dict[int, int]] | None = None,
                     append: str = "") -> CaseCheck:
    """:func:`check_case` on renderings of one conversation; pass the same :class:`Renderings`
    twice to check a marked template's masks only (lint). ``owner`` maps the full rendering's
    characters to template nodes (:func:`owners`) for the defects."""
    result = CaseCheck()
    if train is not orig:
        result.render_diff = same_rendering(orig, train, append=append)
        if result.render_diff is not None:
            return result
    full = train.full()
    if isinstance(full, Raised):
        return result
    result.valid = True
    result.rendered = full
    result.oracle = orig.oracle()
    if result.oracle is None:
        return result
    if append and not result.oracle.problems:
        result.oracle = with_appended_stop(result.oracle, orig.case, append)
    if result.oracle.problems:
        result.problem = result.oracle.problems[0]
        return result
    if mask_of(full.spans) != result.oracle.mask():
        result.defects = mask_diff(result.oracle, full.spans, owner(full.text) if owner else None)
    return result


def prefix_break(r: Renderings) -> int | None:
    """The first assistant message ``k`` whose generation prompt ``render(messages[:k],
    add_generation_prompt=True)`` is not a prefix of the full rendering (what incremental masking
    and RL rollouts assume), or None; None too when a rendering raises."""
    msgs = r.case.messages
    full = r.get(len(msgs), False)
    if isinstance(full, Raised):
        return None
    for k in range(1, len(msgs)):
        if msgs[k]["role"] == "assistant":
            head = r.get(k, True)
            if isinstance(head, Raised):
                return None
            if not full.text.startswith(head.text):
                return k
    return None


__all__ = [
    "CaseCheck", "DefectKind", "MaskDefect", "Raised", "RenderDiff", "Rendered", "Renderings", "TemplateRaised",
    "check_case", "check_renderings", "mask_diff", "prefix_break", "mask_of", "mark_spans", "merge_spans", "outcome", "owners", "runs", "same_rendering",
]
