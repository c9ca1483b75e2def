"""Render the probe set recording, for every generation span, the line of its ``{% generation %}`` tag.

Used by the token rules (TMPL011, TMPL012) through :func:`tmplc.render.render_lined`; spans are
character offsets of the rendering, computed as transformers' ``AssistantTracker`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysed import Analysed
from ..conversations import Case
from ..errors import InputError
from ..render import render_lined


@dataclass
class LinedRender:
    case: Case
    text: str
    spans: list[tuple[int, int, int]]  # (start, end, line of the {% generation %} tag), render order


def lined_renders(analysed: Analysed, cases: list[Case] | None = None) -> list[LinedRender]:
    """Render ``cases`` (default: every probe and its assistant-ending prefixes); conversations
    the template refuses are skipped."""
    try:
        tpl = analysed.compiled
    except InputError:
        return []
    out = []
    for case in analysed.probes_and_prefixes if cases is None else cases:
        try:
            text, spans, lines = render_lined(tpl, case.messages, case.tools, add_generation_prompt=case.full_agp,
                                              **case.kwargs)
        except Exception:  # noqa: BLE001 - the template refuses this conversation
            continue
        out.append(LinedRender(case, text, [(a, b, line) for (a, b), line in zip(spans, lines)]))
    return out
