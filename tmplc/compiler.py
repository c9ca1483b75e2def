"""``augment``: parse → locate → rewrite → prove → (write). See docs/how-it-works.md."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from . import __version__
from .conversations import Case, Features, detect_features, probe_cases, with_prefixes
from .edits import cleanup
from .locate import Evidence, Planner, Region, Unsupported, assemble, label_trace, split_edits
from .oracle import oracle_for
from .prove import Failure, ProofReport, check_case, prove
from .render import compile_template, has_markers
from .syntax import Template, parse
from .trace import TraceError, instrument, read_trace

HEADER_RE = re.compile(r"\A\{# tmplc [^\n]*#\}\n")


@dataclass
class AugmentResult:
    """Outcome of :func:`augment`.

    ``status``: ``"proved"`` (``text`` is the verified training template), ``"verified"`` (the
    source already had markers and they passed the proof; ``text`` is the source unchanged) or
    ``"unsupported"`` (``reason`` is a code from :data:`tmplc.locate.REASONS`, ``message`` says
    why, ``counterexample`` is a minimal conversation when there is one).
    ``timings`` holds seconds per stage (parse, locate, rewrite, proof).
    """

    status: str
    text: str | None = None
    regions: list[Region] = field(default_factory=list)
    report: ProofReport | None = None
    reason: str | None = None
    message: str = ""
    counterexample: Failure | None = None
    timings: dict[str, float] = field(default_factory=dict)
    features: Features | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("proved", "verified")


def _collect(original: str, template: Template, cases: list[Case]):
    inst = instrument(template)
    orig = compile_template(original)
    evidence = Evidence()
    rendered = 0
    assistant_turns = 0
    for case in cases:
        oracle = oracle_for(orig, case)
        if oracle is None:
            continue
        rendered += 1
        for p in oracle.problems:
            if p.code != "untraceable-turn":
                raise Unsupported(p.code, p.message, case)
        if oracle.problems:
            continue
        assistant_turns += len(oracle.turns)
        raw = case.render(inst.compiled)[0]
        try:
            trace = read_trace(inst, raw)
        except TraceError as exc:
            raise Unsupported("trace-mismatch", str(exc), case) from None
        if trace.text != oracle.text:
            raise Unsupported("trace-mismatch", "the instrumented template renders differently", case)
        key = len(evidence.renders)
        evidence.renders[key] = trace.text
        evidence.cases[key] = case
        for e in trace.emissions:
            e.trace = key
        for item in label_trace(trace.emissions, oracle.mask()):
            evidence.add(item.emission.site, item)
    if rendered == 0:
        raise Unsupported("raises-on-every-probe", "the template raises on every probe conversation")
    if assistant_turns == 0:
        raise Unsupported("never-renders-assistant", "no probe conversation renders an assistant turn")
    return inst, evidence


def locate(original: str, cases: list[Case]) -> tuple[str, list[Region]]:
    """Return the training template text (without header) and its regions.

    Raises:
        Unsupported: with a reason code when no marker placement fits the oracle.
    """
    source = original
    for _ in range(8):
        template = parse(source)
        inst, evidence = _collect(original, template, cases)
        edits = split_edits(template, inst, evidence)
        if edits:
            from .edits import Editor

            source = Editor(template).apply([], edits)
            continue
        regions = Planner(template, inst, evidence).plan()
        if not regions:
            raise Unsupported("never-renders-assistant", "no output node is ever generated text")
        return cleanup(assemble(template, regions)), regions
    raise Unsupported("unsplittable-output", "splitting did not converge")


def header(name: str, examples: int, seed: int) -> str:
    return f"{{# tmplc {__version__}: training template of {name}; proof: {examples} examples, seed {seed} #}}\n"


def strip_header(text: str) -> str:
    return HEADER_RE.sub("", text, count=1)


def augment(source: str, name: str = "<string>", examples: int = 200, seed: int = 0) -> AugmentResult:
    """Compile a chat template into its training variant and prove it.

    Args:
        source: the original template text.
        name: shown in the written header (usually the source file name).
        examples: hypothesis examples for the proof.
        seed: hypothesis seed; the same seed gives the same result.

    Returns:
        :class:`AugmentResult`. Never raises for templates it cannot handle: the result is
        ``unsupported`` with a reason code.

    Raises:
        InputError: malformed Jinja (from :func:`tmplc.syntax.parse` or jinja2's compiler).
    """
    from .cli_support import compile_or_error

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    parse(source, name)
    compile_or_error(source, name)
    timings["parse"] = time.perf_counter() - t0
    features = detect_features(source)
    if has_markers(source):
        t0 = time.perf_counter()
        report = prove(source, source, features, examples, seed)
        timings["proof"] = time.perf_counter() - t0
        if report.ok:
            return AugmentResult("verified", source, report=report, timings=timings, features=features)
        return AugmentResult("unsupported", None, report=report, reason="proof-failed",
                             message=report.failure.message, counterexample=report.failure, timings=timings, features=features)
    probes = probe_cases(features)
    last_failure: Failure | None = None
    report = None
    regions: list[Region] = []
    for _round in range(3):
        t0 = time.perf_counter()
        try:
            body, regions = locate(source, with_prefixes(probes))
        except Unsupported as exc:
            timings["locate"] = timings.get("locate", 0) + time.perf_counter() - t0
            cex = Failure("oracle", exc.message, exc.case) if exc.case is not None else last_failure
            return AugmentResult("unsupported", reason=exc.code, message=exc.message, counterexample=cex,
                                 timings=timings, features=features, report=report)
        timings["locate"] = timings.get("locate", 0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        text = header(name, examples, seed) + body
        compile_template(text)
        timings["rewrite"] = timings.get("rewrite", 0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        report = prove(source, text, features, examples, seed)
        timings["proof"] = timings.get("proof", 0) + time.perf_counter() - t0
        if report.ok and report.turns_checked == 0:
            return AugmentResult("unsupported", reason="never-renders-assistant",
                                 message="no generated conversation rendered an assistant turn the proof could check",
                                 timings=timings, features=features, report=report)
        if report.ok:
            return AugmentResult("proved", text, regions, report, timings=timings, features=features)
        last_failure = report.failure
        if report.failure.kind == "oracle":
            code = report.failure.detail or "proof-failed"
            return AugmentResult("unsupported", reason=code, message=report.failure.message,
                                 counterexample=report.failure, timings=timings, features=features, report=report)
        # Counterexample-guided: learn from the failing conversation and locate again.
        probes = probes + [report.failure.case]
    return AugmentResult("unsupported", reason="proof-failed", message=last_failure.message if last_failure else "",
                         counterexample=last_failure, timings=timings, features=features, report=report)


def verify(original: str, training: str, examples: int = 200, seed: int = 0) -> ProofReport:
    """Prove that ``training`` renders like ``original`` and masks what the model generates.

    Args:
        original: the shipped template. training: a template with ``{% generation %}`` markers.
    Returns:
        :class:`tmplc.prove.ProofReport`.
    """
    return prove(original, training, detect_features(original), examples, seed)


__all__ = ["AugmentResult", "augment", "verify", "check_case", "has_markers"]
