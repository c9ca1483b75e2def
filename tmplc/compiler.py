"""``augment``: analyse → rewrite → prove, with typed outcomes. See docs/how-it-works.md.

Outcomes fail closed: :class:`Proved` (a verified training template), :class:`Verified` (the
source already had markers and they passed), or :class:`Unsupported` with a :class:`Reason`;
an internal error anywhere in rewrite or proof is ``Unsupported(Reason.INTERNAL_ERROR)`` with
the traceback kept for ``--verbose``, never an escaping exception.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

from .analysed import Analysed, analyse
from .plan import Region
from .probes import Features, with_prefixes
from .prove import Failure, FailureKind, ProofReport, prove
from .oracle import POLICIES
from .reasons import CannotAugment, Reason
from .rewrite import header, rewrite

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

    def __call__(self, stage: str) -> "_Clock":
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self._stage] = self.timings.get(self._stage, 0.0) + time.perf_counter() - self._t0


def augment(source: str, name: str = "<string>", examples: int = 200, seed: int = 0,
            append_stop: bool = False, policy: str = "as-rendered") -> AugmentResult:
    """Compile a chat template into its training variant and prove it.

    Args:
        source: the original template text.
        name: shown in the written header and in error positions (usually the source file name).
        examples: hypothesis examples for the proof.
        seed: hypothesis seed; the same seed gives the same result.
        append_stop: where the template writes no end-of-turn text, append the opening marker of
            a following user message after a final assistant turn (TRL PR #6044): a declared
            rendering change, proved as "identical except that appended marker" and named in the
            written header. Default: byte-identical rendering, no stop on such a final turn.
        policy: ``"as-rendered"`` (every assistant turn as the template renders it, slime PR
            #1742) or ``"last-turn"`` (only a final assistant turn; named in the header).

    Returns:
        :class:`Proved`, :class:`Verified` or :class:`Unsupported`; never raises for a template
        it cannot handle, including tmplc's own internal errors (``Reason.INTERNAL_ERROR``).

    Raises:
        InputError: malformed Jinja (``name:line:col: message``).
    """
    clock = _Clock()
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: one of {', '.join(POLICIES)}")
    with clock("parse"):
        original = analyse(source, name)
        original.policy = policy
    try:
        return _augment(original, name, examples, seed, clock, append_stop)
    except Exception as exc:  # noqa: BLE001 - fail closed: an internal error is an outcome
        return Unsupported(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", timings=clock.timings,
                           trace=traceback.format_exc())


def _augment(original: Analysed, name: str, examples: int, seed: int, clock: _Clock,
             append_stop: bool = False) -> AugmentResult:
    features = original.features
    if original.has_markers:
        with clock("proof"):
            report = prove(original, original, examples, seed)
        if report.failure is None:
            return Verified(original.source, report, features, clock.timings, stop_notes(original))
        return Unsupported(Reason.PROOF_FAILED, report.failure.message, report.failure, report, features, clock.timings)
    append = stop_to_append(original) if append_stop else ""
    result = _rounds(original, name, examples, seed, clock, True, append)
    if isinstance(result, tuple):  # a moved marker did not pass: the plan as is
        result = _rounds(original, name, examples, seed, clock, False, append)
    return result  # type: ignore[return-value]


def _rounds(original: Analysed, name: str, examples: int, seed: int, clock: _Clock, move: bool, append: str = ""):
    """Rewrite and prove, learning from counterexamples (at most :data:`MAX_ROUNDS`). Returns an
    :data:`AugmentResult`, or ``(failure,)`` when ``move`` moved a marker and no round passed."""
    features = original.features
    cases = list(original.probes_and_prefixes)
    last_failure: Failure | None = None
    report = None
    moved_any = False
    for _round in range(MAX_ROUNDS):
        try:
            with clock("locate"):
                body, regions, moved = rewrite(original, cases, move, append)
        except CannotAugment as exc:
            cex = Failure(FailureKind.ORACLE, exc.message, exc.case) if exc.case is not None else last_failure
            return Unsupported(exc.reason, exc.message, cex, report, features, clock.timings)
        moved_any = moved_any or moved
        with clock("rewrite"):
            training = Analysed(header(name, examples, seed, append, original.policy) + body, name)
            training.compiled  # noqa: B018 - an uncompilable rewrite is an internal error
        with clock("proof"):
            report = prove(original, training, examples, seed, append)
        failure = report.failure
        if failure is None and report.turns_checked == 0:
            return Unsupported(Reason.NEVER_RENDERS_ASSISTANT,
                               "no generated conversation rendered an assistant turn the proof could check",
                               None, report, features, clock.timings)
        if failure is None:
            notes = () if append else stop_notes(original)
            return Proved(training.source, report, tuple(regions), features, clock.timings, notes)
        last_failure = failure
        if failure.kind is FailureKind.ORACLE:
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


def verify(original: str, training: str, examples: int = 200, seed: int = 0) -> ProofReport:
    """Prove that ``training`` renders like ``original`` and masks what the model generates.

    Args:
        original: the shipped template. training: a template with ``{% generation %}`` markers.
        examples, seed: hypothesis examples and seed.

    Returns:
        :class:`tmplc.prove.ProofReport`.

    Raises:
        InputError: either template is malformed Jinja.
    """
    return prove(analyse(original, "original"), analyse(training, "training"), examples, seed)


__all__ = ["AugmentResult", "Proved", "Unsupported", "Verified", "augment", "verify"]
