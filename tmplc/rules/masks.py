"""Compare a marked template's generation spans with the oracle on the probe set.

Every differing character is attributed, through the tracer, to the template node that wrote
it, so lint rules can point at a line. Offsets are characters of the rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..conversations import Case, with_prefixes
from ..oracle import oracle_for
from ..render import compile_template
from ..syntax import Template
from ..trace import TraceError, instrument, read_trace


@dataclass
class Defect:
    kind: str  # "cue", "other-role", "stop-token", "field"
    offset: int  # source offset of the node that wrote (or failed to mark) the text
    text: str  # the rendered characters concerned
    turn: int
    case: Case


@dataclass
class MaskAnalysis:
    defects: list[Defect] = field(default_factory=list)
    prefix_breaks: list[tuple[int, Case, str]] = field(default_factory=list)  # (message index, case, what)
    checked_turns: int = 0


def _runs(chars: list[int]) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for c in chars:
        if runs and c == runs[-1][1]:
            runs[-1][1] = c + 1
        else:
            runs.append([c, c + 1])
    return [(a, b) for a, b in runs]


def analyse(source: str, template: Template | None, probes: list[Case]) -> MaskAnalysis:
    """Render the probe set; collect mask defects and prefix-preservation breaks."""
    out = MaskAnalysis()
    if template is None:
        return out
    tpl = compile_template(source)
    try:
        inst = instrument(template)
    except Exception:  # noqa: BLE001 - an untraceable template: no attribution
        inst = None
    for case in with_prefixes(probes):
        oracle = oracle_for(tpl, case)
        if oracle is None:
            continue
        _prefix_check(tpl, case, out)
        if oracle.problems:
            continue
        last_agp = case.full_agp
        text, spans = case.render(tpl)
        if not spans:
            continue
        out.checked_turns += len(oracle.turns)
        actual = {c for a, b in spans for c in range(a, b)}
        expected = oracle.mask()
        if actual == expected:
            continue
        owner = _owners(inst, case, last_agp, text) if inst is not None else {}
        for a, b in _runs(sorted(actual - expected)):
            turn = next((i for i, (s, _) in oracle.turns.items() if b == s), None)
            kind = "cue" if turn is not None else "other-role"
            out.defects.append(Defect(kind, owner.get(a, 0), text[a:b], turn or -1, case))
        for a, b in _runs(sorted(expected - actual)):
            turn = next((i for i, (s, e) in oracle.turns.items() if s <= a < e), -1)
            end = oracle.turns.get(turn, (0, 0))[1]
            kind = "stop-token" if b == end else "field"
            out.defects.append(Defect(kind, owner.get(a, 0), text[a:b], turn, case))
    return out


def _owners(inst, case: Case, agp: bool, text: str) -> dict[int, int]:
    raw = case.render(inst.compiled, agp=agp)[0]
    try:
        trace = read_trace(inst, raw)
    except TraceError:
        return {}
    if trace.text != text:
        return {}
    owner: dict[int, int] = {}
    for e in trace.emissions:
        for c in range(e.start, e.end):
            owner[c] = inst.sites[e.site].node.start
    return owner


def _prefix_check(tpl, case: Case, out: MaskAnalysis) -> None:
    """With the generation prompt, the rendering before each assistant message must be a prefix
    of the full rendering (what incremental masking and RL rollouts assume)."""
    def r(messages, agp):
        return case.render(tpl, messages, agp)[0]

    msgs = case.messages
    if len(msgs) < 2 or case.add_generation_prompt:
        return
    try:
        full = r(msgs, False)
        for k in range(1, len(msgs)):
            if msgs[k]["role"] == "assistant":
                head = r(msgs[:k], True)
                if not full.startswith(head):
                    out.prefix_breaks.append((k, case, "the generation prompt before it"))
                    return
    except Exception:  # noqa: BLE001
        return
