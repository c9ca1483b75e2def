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
from .oracle import with_appended_stop
from .plan import Planner, Region
from .reasons import CannotAugment, Reason
from .split import split_edits
from .stops import move_markers
from .syntax import Template, parse
from .trace import instrument

HEADER_RE = re.compile(r"\A\{# tmplc [^\n]*#\}\n")
MAX_SPLIT_ROUNDS = 8


def header(name: str, examples: int, seed: int, append: str = "", policy: str = "as-rendered") -> str:
    """The first line of a written training template: tmplc's version, the source, the proof, a
    declared rendering change (``--append-stop``: ``append`` after a final assistant turn) and a
    masking policy other than the default (``--policy last-turn``)."""
    change = (f"; rendering changed: appends {append!r} after a final assistant turn (--append-stop, TRL PR #6044)"
              if append else "")
    if policy != "as-rendered":
        change += f"; masks: {policy} (only a final assistant turn)"
    return f"{{# tmplc {__version__}: training template of {name}; proof: {examples} examples, seed {seed}{change} #}}\n"


def strip_header(text: str) -> str:
    """``text`` without tmplc's header line."""
    return HEADER_RE.sub("", text, count=1)


def rewrite(original: Analysed, cases: list[Case], move: bool = True, append: str = "") -> tuple[str, list[Region], bool]:
    """The training template text (without header), its regions, and whether a next-message
    marker was moved into an assistant turn's block.

    Args:
        original: the analysed original template.
        cases: probe conversations; the oracle of each is computed once (:meth:`Analysed.oracle`).
        move: move a next message's opening marker into the previous assistant turn's block
            (:func:`tmplc.stops.move_markers`) when the plan masks it where it is written.
        append: ``--append-stop``'s text, written after a final assistant turn in that block.

    Raises:
        CannotAugment: with a reason when no marker placement fits the oracle.
    """
    oracles = [(case, original.oracle(case)) for case in cases]
    template, inst, evidence, regions = _plan(original, oracles, original.template, original.instrumented)
    moved = move_markers(template, inst, evidence, regions, append) if move else None
    if moved is not None:
        try:
            tree = parse(moved)
            if append:  # the moved template appends the stop: locate against that rendering
                oracles = [(c, o if o is None or o.problems else with_appended_stop(o, c, append)) for c, o in oracles]
            template, inst, evidence, regions = _plan(original, oracles, tree, instrument(tree, original.thinking))
        except CannotAugment:
            moved = None
            oracles = [(case, original.oracle(case)) for case in cases]
            template, inst, evidence, regions = _plan(original, oracles, original.template, original.instrumented)
    return cleanup(assemble(template, regions)), regions, moved is not None


def _plan(original: Analysed, oracles, template: Template, inst):
    """Locate → split until no output node straddles the mask, then plan: (template, its
    instrumented copy, the evidence, the regions)."""
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
        return template, inst, evidence, regions
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
