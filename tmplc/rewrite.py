"""Rewrite: split, plan and assemble the training template; the written header (its one owner).

:func:`rewrite` loops locate → split until no output node straddles the mask boundary
(:mod:`tmplc.split`), plans the regions (:mod:`tmplc.plan`) and inserts the markers into the
original text with whitespace-safe tags (:func:`assemble`, :class:`tmplc.edits.Editor`).
"""

from __future__ import annotations

import re

from . import __version__
from .analysed import Analysed
from .conversations import Case
from .edits import Editor, cleanup
from .locate import collect
from .plan import Planner, Region
from .reasons import CannotAugment, Reason
from .split import split_edits
from .syntax import Template, parse
from .trace import instrument

HEADER_RE = re.compile(r"\A\{# tmplc [^\n]*#\}\n")
MAX_SPLIT_ROUNDS = 8


def header(name: str, examples: int, seed: int) -> str:
    """The first line of a written training template: tmplc's version, the source, the proof."""
    return f"{{# tmplc {__version__}: training template of {name}; proof: {examples} examples, seed {seed} #}}\n"


def strip_header(text: str) -> str:
    """``text`` without tmplc's header line."""
    return HEADER_RE.sub("", text, count=1)


def rewrite(original: Analysed, cases: list[Case]) -> tuple[str, list[Region]]:
    """The training template text (without header) and its regions.

    Args:
        original: the analysed original template.
        cases: probe conversations; the oracle of each is computed once (:meth:`Analysed.oracle`).

    Raises:
        CannotAugment: with a reason when no marker placement fits the oracle.
    """
    oracles = [(case, original.oracle(case)) for case in cases]
    template: Template = original.template
    inst = original.instrumented
    for _ in range(MAX_SPLIT_ROUNDS):
        evidence = collect(oracles, inst)
        edits = split_edits(template, inst, evidence)
        if edits:
            template = parse(Editor(template).apply([], edits))
            inst = instrument(template, original.thinking)
            continue
        regions = Planner(template, inst, evidence).plan()
        if not regions:
            raise CannotAugment(Reason.NEVER_RENDERS_ASSISTANT, "no output node is ever generated text")
        return cleanup(assemble(template, regions)), regions
    raise CannotAugment(Reason.UNSPLITTABLE_OUTPUT, "splitting did not converge")


def assemble(template: Template, regions: list[Region]) -> str:
    """Insert the generation markers of ``regions`` into ``template``'s source."""
    editor = Editor(template)
    source = template.source
    reps: list[tuple[int, int, str]] = []

    def tag(body: str, lm: str = "", rm: str = "") -> str:
        return "{%" + lm + " " + body + " " + rm + "%}"

    for r in regions:
        s, e = editor.normalize(r.start), editor.normalize(r.end)
        lms, rms = editor.mods(s)
        lme, rme = editor.mods(e)
        body = source[s:e]
        if r.condition is None:
            text = tag("generation", lms, rms) + body + tag("endgeneration", lme, rme)
        else:
            text = (
                tag(f"if {r.condition}", lms) + tag("generation", "", rms) + body
                + tag("endgeneration", lme) + tag("else", "", rms) + body + tag("endif", lme, rme)
            )
        reps.append((s, e, text))
    return editor.apply([], reps)
