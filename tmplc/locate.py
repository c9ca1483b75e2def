"""Locate: which characters of each output node's emissions the model generates.

Trace, don't guess: probe conversations are rendered through an instrumented copy of the
template (:mod:`tmplc.trace`); each emission of each output node is labelled *in* (inside the
oracle's mask), *out*, or *straddling* (the node writes both prompt and generated text, e.g.
Qwen2.5's ``'\\n' + message.content`` or Phi-3's ``'<|assistant|>\\n' + content + '<|end|>\\n'``).
The labelled :class:`Evidence` feeds :mod:`tmplc.split` (straddling nodes are split and traced
again) and :mod:`tmplc.plan` (runs of nodes become generation regions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .conversations import Case
from .oracle import Oracle
from .reasons import CannotAugment, Reason
from .trace import Emission, Instrumented, TraceError, read_trace


class Label(str, Enum):
    """Where an emission lies relative to the oracle's mask."""

    IN = "in"
    OUT = "out"
    STRADDLE = "straddle"


IN, OUT, STRADDLE = Label.IN, Label.OUT, Label.STRADDLE


@dataclass
class Labelled:
    emission: Emission
    label: Label
    cuts: tuple[int, ...] = ()  # offsets inside the emission where the mask starts/stops


@dataclass
class Evidence:
    labels: dict[int, list[Labelled]] = field(default_factory=dict)
    renders: dict[int, str] = field(default_factory=dict)  # rendering key → plain text, see emitted()
    cases: dict[int, Case] = field(default_factory=dict)  # rendering key → the probe conversation

    def emitted(self, item: Labelled) -> str:
        return self.renders[item.emission.trace][item.emission.start : item.emission.end]

    def add(self, site: int, item: Labelled):
        self.labels.setdefault(site, []).append(item)


def label_trace(emissions: list[Emission], mask: set[int]) -> list[Labelled]:
    out = []
    for e in emissions:
        inside = [c in mask for c in range(e.start, e.end)]
        if all(inside):
            out.append(Labelled(e, IN))
        elif not any(inside):
            out.append(Labelled(e, OUT))
        else:
            cuts = tuple(k for k in range(1, len(inside)) if inside[k] != inside[k - 1])
            out.append(Labelled(e, STRADDLE, cuts))
    return out


def collect(oracles: list[tuple[Case, Oracle | None]], inst: Instrumented) -> Evidence:
    """Render each probe through the instrumented template; label every emission against the
    oracle's mask of the original's rendering.

    Args:
        oracles: probe conversations with the original's oracle (None: the original raises).
        inst: the instrumented copy of the template being located (the original, or a split of it).

    Raises:
        CannotAugment: the oracle reports a problem other than an untraceable turn, the
            instrumented copy renders differently, or no probe renders an assistant turn.
    """
    evidence = Evidence()
    rendered = 0
    assistant_turns = 0
    for case, oracle in oracles:
        if oracle is None:
            continue
        rendered += 1
        for p in oracle.problems:
            if p.code != Reason.UNTRACEABLE_TURN:
                raise CannotAugment(p.code, p.message, case)
        if oracle.problems:
            continue
        assistant_turns += len(oracle.turns)
        raw = inst.rendering(case)
        try:
            trace = read_trace(inst, raw)
        except TraceError as exc:
            raise CannotAugment(Reason.TRACE_MISMATCH, str(exc), case) from None
        if trace.text != oracle.text:
            raise CannotAugment(Reason.TRACE_MISMATCH, "the instrumented template renders differently", case)
        key = len(evidence.renders)
        evidence.renders[key] = trace.text
        evidence.cases[key] = case
        for e in trace.emissions:
            e.trace = key
        for item in label_trace(trace.emissions, oracle.mask()):
            evidence.add(item.emission.site, item)
    if rendered == 0:
        raise CannotAugment(Reason.RAISES_ON_EVERY_PROBE, "the template raises on every probe conversation")
    if assistant_turns == 0:
        raise CannotAugment(Reason.NEVER_RENDERS_ASSISTANT, "no probe conversation renders an assistant turn")
    return evidence
