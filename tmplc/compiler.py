"""``augment``: analyse → rewrite → prove, with typed outcomes. See docs/how-it-works.md.

Outcomes fail closed: :class:`Proved` (a verified training template), :class:`Verified` (the
source already had markers and they passed), or :class:`Unsupported` with a :class:`Reason`;
an internal error anywhere in rewrite or proof is ``Unsupported(Reason.INTERNAL_ERROR)`` with
the traceback kept for ``--verbose``, never an escaping exception.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any

from .analysed import Analysed, analyse
from .errors import InputError, NestingError
from .history import change_report, prefix_preserving
from .oracle import POLICIES
from .plan import Region
from .probes import Features, with_prefixes
from .prove import Failure, FailureKind, ProofReport, limit_failure, prove
from .reasons import CannotAugment, Reason
from .render import RenderLimit, budget
from .rewrite import header, rewrite
from .tokens import TokenChecker

MAX_ROUNDS = 6  # counterexample-guided rounds: locate again with the failing conversation (Gemma 4 31B needs 5 at 40 examples)


@dataclass(frozen=True)
class Proved:
    """``text`` is the training template (header included), proved by ``report``."""

    text: str
    report: ProofReport
    regions: tuple[Region, ...] = ()
    features: Features | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # one line each, shown by the CLI (e.g. a final turn with no stop)
    change: str = ""  # --prefix-preserving: the declared rendering change, a unified diff on one conversation
    status = "proved"
    ok = True


@dataclass(frozen=True)
class Verified:
    """The source already carried markers and passed the proof; ``text`` is the source unchanged."""

    text: str
    report: ProofReport
    features: Features | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    status = "verified"
    ok = True


@dataclass(frozen=True)
class Unsupported:
    """No training template: ``reason`` says why, ``message`` names the node or turn,
    ``counterexample`` is a minimal conversation when there is one, ``trace`` the traceback of an
    internal error."""

    reason: Reason
    message: str
    counterexample: Failure | None = None
    report: ProofReport | None = None
    features: Features | None = None
    timings: dict[str, float] = field(default_factory=dict)
    trace: str = ""
    notes: tuple[str, ...] = ()
    status = "unsupported"
    ok = False
    text = None


AugmentResult = Proved | Verified | Unsupported


class _Clock:
    """Seconds per stage (parse, locate, rewrite, proof), accumulated over rounds."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._stage = ""
        self._t0 = 0.0

    def __call__(self, stage: str) -> _Clock:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self._stage] = self.timings.get(self._stage, 0.0) + time.perf_counter() - self._t0


def augment(source: str | Analysed, name: str = "<string>", examples: int = 200, seed: int = 0,
            timeout: float | None = None, tokenizer: Any = None, append_stop: bool = False,
            policy: str = "as-rendered", prefix_preserving: bool = False,
            sanitize_control_tokens: bool = False) -> AugmentResult:
    """Compile a chat template into its training variant and prove it.

    Args:
        source: the original template text (or an :class:`Analysed` one, not analysed again).
        name: shown in the written header and in error positions (usually the source file name).
        examples: hypothesis examples for the proof.
        seed: hypothesis seed; the same seed gives the same result.
        timeout: wall-clock seconds for every render of this template together (analysis,
            locate and proof; :func:`tmplc.render.budget`); None: no time limit. Renderings
            are limited to :data:`tmplc.render.MAX_RENDER_CHARS` characters either way.
        tokenizer: a fast tokenizer (:func:`tmplc.tokens.load_tokenizer`): the proof then also
            checks the token-level mask transformers derives from the spans (no token of a span
            lost, none outside added) on conversations with multi-byte field edges.
        append_stop: where the template writes no end-of-turn text, append the opening marker of
            a following user message after a final assistant turn (TRL PR #6044): a declared
            rendering change, proved as "identical except that appended marker" and named in the
            written header. Default: byte-identical rendering, no stop on such a final turn.
        policy: ``"as-rendered"`` (every assistant turn as the template renders it, slime PR
            #1742) or ``"last-turn"`` (only a final assistant turn; named in the header).
        prefix_preserving: render history assistant turns as the model generated them (TRL's
            hand-made Qwen3/3.5/3.6 rewrite, done generically by :mod:`tmplc.history`): the
            template conditions that render a history turn differently are fixed to their value
            as generated, a declared rendering change (named in the header, shown as a diff in
            :attr:`Proved.change`), proved prefix-preserving, with masks as the rewritten
            template renders each turn; ``NOT_PREFIX_PRESERVABLE`` when no such rewrite holds.
            Byte-identical to the default when the template already is prefix-preserving.
        sanitize_control_tokens: with ``tokenizer``, check tokens as ``apply_chat_template(...,
            sanitize_control_tokens=True)`` tokenizes (:class:`tmplc.tokens.TokenChecker`).

    Returns:
        :class:`Proved`, :class:`Verified` or :class:`Unsupported`; never raises for a template
        it cannot handle: a render over the budget is ``Reason.RENDER_TIMEOUT`` or
        ``RENDER_TOO_LARGE`` (with the conversation), a template nested too deeply
        ``TOO_DEEPLY_NESTED``, tmplc's own errors ``INTERNAL_ERROR``.

    Raises:
        InputError: malformed Jinja (``name:line:col: message``).
        ValueError: an unknown ``policy``; ``append_stop`` with ``prefix_preserving``.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: one of {', '.join(POLICIES)}")
    if append_stop and prefix_preserving:
        raise ValueError("append_stop and prefix_preserving cannot be combined: the appended marker is not what "
                         "a history turn renders before a tool message")
    clock = _Clock()
    original = None
    tokens = None
    if tokenizer is not None:
        text = source.source if isinstance(source, Analysed) else source
        tokens = TokenChecker(tokenizer, sanitize_control_tokens, text if sanitize_control_tokens else None)
    with budget(timeout):
        try:
            with clock("parse"):
                original = analyse(source, name) if isinstance(source, str) else source
                original.policy = policy
            return _augment(original, name, examples, seed, clock, tokens, append_stop, prefix_preserving)
        except InputError as exc:
            if original is None and not isinstance(exc, NestingError):
                raise  # malformed Jinja in the input; after analysis, an InputError is tmplc's bug
            return _failed(exc, clock)
        except (RenderLimit, Exception) as exc:  # noqa: BLE001 - fail closed: errors are outcomes
            return _failed(exc, clock)


def _failed(exc: BaseException, clock: _Clock) -> Unsupported:
    """The :class:`Unsupported` outcome of an exception that ended :func:`augment`."""
    if isinstance(exc, NestingError):
        return Unsupported(Reason.TOO_DEEPLY_NESTED, str(exc), timings=clock.timings)
    if isinstance(exc, RenderLimit):
        failure = limit_failure(exc)
        return Unsupported(Reason(exc.reason), failure.message, failure, timings=clock.timings)
    reason = Reason.TOO_DEEPLY_NESTED if isinstance(exc, RecursionError) else Reason.INTERNAL_ERROR
    return Unsupported(reason, f"{type(exc).__name__}: {exc}", timings=clock.timings,
                       trace="".join(traceback.format_exception(exc)))


def _augment(original: Analysed, name: str, examples: int, seed: int, clock: _Clock,
             tokens: TokenChecker | None, append_stop: bool, history: bool = False) -> AugmentResult:
    features = original.features
    if original.has_markers:
        with clock("proof"):
            existing = prove(original, original, examples, seed, tokens=tokens,
                             source=original if history else None)
        failure = existing.failure
        if failure is None:
            return Verified(original.source, existing, features, clock.timings, stop_notes(original))
        reason = failure.reason if failure.kind is FailureKind.BUDGET and failure.reason else \
            Reason.NOT_PREFIX_PRESERVABLE if failure.kind is FailureKind.HISTORY else Reason.PROOF_FAILED
        return Unsupported(reason, failure.message, failure, existing, features, clock.timings)
    if history:
        return _prefix_preserving(original, name, examples, seed, clock, tokens)
    append = stop_to_append(original) if append_stop else ""
    return _moved_or_plain(original, name, examples, seed, clock, append, tokens)


def _moved_or_plain(original: Analysed, name: str, examples: int, seed: int, clock: _Clock, append: str,
                    tokens: TokenChecker | None, source: Analysed | None = None, history: str = "") -> AugmentResult:
    """:func:`_rounds` with next-message markers moved into the previous turn's block, and when
    a moved marker did not pass, with the plan as is; the two share their proofs (:data:`Proofs`)."""
    proofs: Proofs = {}
    result = _rounds(original, name, examples, seed, clock, True, append, tokens, source, history, proofs)
    if isinstance(result, tuple):  # a moved marker did not pass: the plan as is
        result = _rounds(original, name, examples, seed, clock, False, append, tokens, source, history, proofs)
    assert not isinstance(result, tuple)  # only a round that moved a marker returns one
    return result


HISTORY_ROUNDS = 3  # --prefix-preserving: conditions learnt again from the proof's counterexamples


def _prefix_preserving(original: Analysed, name: str, examples: int, seed: int, clock: _Clock,
                       tokens: TokenChecker | None) -> AugmentResult:
    """``--prefix-preserving``: rewrite the original so history renders as generated
    (:func:`tmplc.history.prefix_preserving`), then augment and prove that rewrite against its own
    oracle, with the shipped template as ``source`` (:func:`tmplc.prove.prove`). A counterexample
    that breaks the prefix property is learnt from: the conditions are found again with it."""
    features = original.features
    extra: list = []
    result: AugmentResult | None = None
    for _ in range(HISTORY_ROUNDS):
        with clock("history"):
            try:
                rewritten = prefix_preserving(original, extra)
            except CannotAugment as exc:
                cex = Failure(FailureKind.HISTORY, exc.message, exc.case) if exc.case is not None else None
                return Unsupported(exc.reason, exc.message, cex, None, features, clock.timings)
            target = original
            if rewritten.changes:
                target = Analysed(rewritten.source, name, original.policy)
                target.__dict__["features"] = original.features  # the proof draws what the original accepts
        result = _moved_or_plain(target, name, examples, seed, clock, "", tokens, original, rewritten.declaration())
        f = result.counterexample if isinstance(result, Unsupported) else None
        if f is None or f.kind is not FailureKind.HISTORY or f.case in extra:
            break
        extra.append(f.case)
    assert result is not None
    if isinstance(result, Proved):
        if rewritten.changes:
            return replace(result, change=change_report(original, target.compiled, name))
        return replace(result, notes=result.notes + (ALREADY_NOTE,))
    return result


ALREADY_NOTE = "note: --prefix-preserving: history is already rendered as generated; the rendering is unchanged"


# The training template and proof of each training text one augment has proved, by text: the
# proof is deterministic in the two templates, examples, seed, tokens, append and source, so a
# round whose rewrite writes a text already proved (DiffusionGemma's rounds 3 to 6 do) takes
# that proof instead of repeating it. One dict per original (and its proof arguments).
Proofs = dict[str, tuple[Analysed, ProofReport]]


def _rounds(original: Analysed, name: str, examples: int, seed: int, clock: _Clock, move: bool, append: str = "",
            tokens: TokenChecker | None = None, source: Analysed | None = None, history: str = "",
            proofs: Proofs | None = None):
    """Rewrite and prove, learning from counterexamples (at most :data:`MAX_ROUNDS`). Returns an
    :data:`AugmentResult`, or ``(failure,)`` when ``move`` moved a marker and no round passed.
    ``source`` and ``history``: ``--prefix-preserving``'s shipped template (``original`` is its
    rewrite) and the declared change; ``proofs``: the texts proved so far (:data:`Proofs`)."""
    proofs = {} if proofs is None else proofs
    features = original.features
    cases = list(original.probes_and_prefixes)
    last_failure: Failure | None = None
    report: ProofReport | None = None
    moved_any = False
    for _round in range(MAX_ROUNDS):
        try:
            with clock("locate"):
                body, regions, moved = rewrite(original, cases, move, append)
        except CannotAugment as exc:
            cex = Failure(FailureKind.ORACLE, exc.message, exc.case) if exc.case is not None else last_failure
            return Unsupported(exc.reason, exc.message, cex, report, features, clock.timings)
        moved_any = moved_any or moved
        text = header(name, examples, seed, append, original.policy, history) + body
        if text in proofs:
            training, report = proofs[text]
        else:
            with clock("rewrite"):
                training = Analysed(text, name)
                try:
                    training.compiled  # noqa: B018 - any other uncompilable rewrite is an internal error
                except NestingError as exc:
                    return Unsupported(Reason.TOO_DEEPLY_NESTED, f"the training template (markers add a level) is "
                                       f"{exc.message}", None, report, features, clock.timings)
            with clock("proof"):
                report = prove(original, training, examples, seed, tokens=tokens, append=append, source=source)
            proofs[text] = training, report
        failure = report.failure
        if failure is None and report.turns_checked == 0:
            return Unsupported(Reason.NEVER_RENDERS_ASSISTANT,
                               "no generated conversation rendered an assistant turn the proof could check",
                               None, report, features, clock.timings)
        if failure is None:
            notes = () if append else stop_notes(original)
            return Proved(training.source, report, tuple(regions), features, clock.timings, notes)
        last_failure = failure
        if failure.kind is FailureKind.HISTORY:  # no marker placement changes the rendering
            return Unsupported(Reason.NOT_PREFIX_PRESERVABLE, failure.message, failure, report, features,
                               clock.timings)
        if failure.kind in (FailureKind.ORACLE, FailureKind.BUDGET, FailureKind.TOKENS):
            return Unsupported(failure.reason or Reason.PROOF_FAILED, failure.message, failure, report, features,
                               clock.timings)
        # Counterexample-guided: learn from the failing conversation and locate again.
        cases = cases + with_prefixes([failure.case])
    assert last_failure is not None
    if moved_any:
        return (last_failure,)
    return Unsupported(Reason.PROOF_FAILED, last_failure.message, last_failure, report, features, clock.timings)


UNSTOPPED_NOTE = ("note: the template writes no end-of-turn text after a final assistant turn, so that turn "
                  "has no stop in the mask (history turns end with the next message's opening marker); "
                  "--append-stop appends it (TRL PR #6044)")


def stop_notes(original: Analysed) -> tuple[str, ...]:
    """One-line notes about stops (docs/oracle.md rule 4): a final assistant turn of some probe
    conversation whose template writes no terminator, so its mask carries no stop."""
    for case in original.probes:
        oracle = original.oracle(case)
        if oracle is not None and oracle.unstopped:
            return (UNSTOPPED_NOTE,)
    return ()


def stop_to_append(original: Analysed) -> str:
    """``--append-stop``'s text: the opening marker that ends a history turn followed by a user
    message in every probe conversation (``<|user|>`` for GLM-4-MoE), when the template writes no
    stop after a final turn; "" when it does, or when the probes disagree."""
    if not stop_notes(original):
        return ""
    seen = set()
    for case in original.probes:
        oracle = original.oracle(case)
        for i, marker in (oracle.markers.items() if oracle is not None else ()):
            if i + 1 < len(case.messages) and case.messages[i + 1].get("role") == "user":
                seen.add(marker)
    return seen.pop() if len(seen) == 1 else ""


def verify(original: str, training: str, examples: int = 200, seed: int = 0,
           timeout: float | None = None, tokenizer: Any = None, sanitize_control_tokens: bool = False) -> ProofReport:
    """Prove that ``training`` renders like ``original`` and masks what the model generates.

    Args:
        original: the shipped template. training: a template with ``{% generation %}`` markers.
        examples, seed: hypothesis examples and seed.
        timeout: seconds for the proof's renders (None: no time limit); a render over the budget
            is the report's failure (``FailureKind.BUDGET``).
        tokenizer, sanitize_control_tokens: check token-level masks too (see :func:`augment`).

    Returns:
        :class:`tmplc.prove.ProofReport`.

    Raises:
        InputError: either template is malformed Jinja.
    """
    tokens = TokenChecker(tokenizer, sanitize_control_tokens, training if sanitize_control_tokens else None) \
        if tokenizer is not None else None
    return prove(analyse(original, "original"), analyse(training, "training"), examples, seed, timeout, tokens)


__all__ = ["AugmentResult", "Proved", "Unsupported", "Verified", "augment", "verify"]
