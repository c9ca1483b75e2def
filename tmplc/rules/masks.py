"""The mask rules' analysis: a marked template's generation spans against the oracle, on the probes.

Every differing character is attributed, through the tracer, to the template node that wrote
it (:func:`tmplc.verification.owners`), so lint rules can point at a line. The comparison itself is
:func:`tmplc.verification.check_renderings`. Offsets are characters of the rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..analysed import Analysed
from ..conversations import Case
from ..verification import MaskDefect, Rendered, Renderings, check_renderings, owners, prefix_break


@dataclass(frozen=True)
class Found:
    """A mask defect and the probe conversation that shows it."""

    defect: MaskDefect
    case: Case


@dataclass
class MaskAnalysis:
    found: list[Found] = field(default_factory=list)
    prefix_breaks: list[tuple[int, Case]] = field(default_factory=list)  # (message index, probe)
    checked_turns: int = 0
    renders: list[tuple[Case, Rendered]] = field(default_factory=list)  # every probe the template renders


def analyse(analysed: Analysed) -> MaskAnalysis:
    """Render the probes with prefixes; collect their renderings, mask defects and
    prefix-preservation breaks.

    Args:
        analysed: a template that parses (its CST exists).
    """
    out = MaskAnalysis()
    try:
        inst = analysed.instrumented
    except Exception:  # noqa: BLE001 - an untraceable template: no attribution
        inst = None
    for case in analysed.probes_and_prefixes:
        r = Renderings(analysed.compiled, case)
        owner = (lambda text, case=case: owners(inst, case, text)) if inst is not None else None
        result = check_renderings(r, r, owner)
        if result.rendered is not None:
            out.renders.append((case, result.rendered))
        if result.oracle is None:
            continue
        if len(case.messages) >= 2 and not case.add_generation_prompt:
            k = prefix_break(r)
            if k is not None:
                out.prefix_breaks.append((k, case))
        if result.problem is not None or result.rendered is None or not result.rendered.spans:
            continue
        out.checked_turns += len(result.oracle.turns)
        out.found += [Found(d, case) for d in result.defects]
    return out
