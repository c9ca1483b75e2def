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
from .edits import Editor, block_tag, cleanup, stand_in
from .locate import collect
from .oracle import with_appended_stop
from .plan import Planner, Region
from .reasons import CannotAugment, Reason
from .split import split_edits
from .stops import move_markers
from .syntax import Block, Node, Template, Text
from .verification import Renderings, check_renderings

HEADER_RE = re.compile(r"\A\{# tmplc [^\n]*#\}\n")
MAX_SPLIT_ROUNDS = 8


def header(name: str, examples: int, seed: int, append: str = "", policy: str = "as-rendered",
           history: str = "") -> str:
    """The first line of a written training template: tmplc's version, the source, the proof, a
    declared rendering change (``--append-stop``: ``append`` after a final assistant turn;
    ``--prefix-preserving``: ``history``, the conditions fixed so history assistant turns render
    as generated, :meth:`tmplc.history.HistoryRewrite.declaration`) and a masking policy other
    than the default (``--policy last-turn``)."""
    change = (f"; rendering changed: appends {append!r} after a final assistant turn (--append-stop, TRL PR #6044)"
              if append else "")
    if history:
        change += (f"; rendering changed: history assistant turns rendered as generated (--prefix-preserving): "
                   f"{history}")
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

    The planner writes one block per contiguous generated run (:meth:`Planner.window`); where
    that plan differs from the one-condition-per-run plan and fails :func:`holds_on_probes`, the
    latter is returned (its blocks may touch; the proof then reports it).

    Raises:
        CannotAugment: with a reason when no marker placement fits the oracle.
    """
    oracles = [(case, original.oracle(case)) for case in cases]
    template, inst, evidence, regions = _plan(original, oracles, original.template, original.instrumented)
    moved = move_markers(template, inst, evidence, regions, append) if move else None
    if moved is not None:
        try:
            moved_inst = original.instrumented_variant(moved)
            if append:  # the moved template appends the stop: locate against that rendering
                oracles = [(c, o if o is None or o.problems else with_appended_stop(o, c, append)) for c, o in oracles]
            template, inst, evidence, regions = _plan(original, oracles, moved_inst.template, moved_inst)
        except CannotAugment:
            moved = None
            oracles = [(case, original.oracle(case)) for case in cases]
            template, inst, evidence, regions = _plan(original, oracles, original.template, original.instrumented)
    text = cleanup(assemble(template, regions))
    plain = Planner(template, inst, evidence, two_pass=False).plan()
    if _shape(plain) != _shape(regions) and not holds_on_probes(original, text, cases, append):
        regions, text = plain, cleanup(assemble(template, plain))
    return text, regions, moved is not None


def _plan(original: Analysed, oracles, template: Template, inst):
    """Locate → split until no output node straddles the mask, then plan: (template, its
    instrumented copy, the evidence, the regions)."""
    for _ in range(MAX_SPLIT_ROUNDS):
        evidence = collect(oracles, inst)
        edits = split_edits(template, inst, evidence)
        if edits:
            inst = original.instrumented_variant(Editor(template).apply([], edits))
            template = inst.template
            continue
        regions = Planner(template, inst, evidence).plan()
        if not regions:
            raise CannotAugment(Reason.NEVER_RENDERS_ASSISTANT, "no output node is ever generated text")
        return template, inst, evidence, regions
    raise CannotAugment(Reason.UNSPLITTABLE_OUTPUT, "splitting did not converge")


def _shape(regions: list[Region]) -> list[tuple]:
    return [(r.start, r.end, r.condition, r.roles is not None, r.generated_first) for r in regions]


def holds_on_probes(original: Analysed, text: str, cases: list[Case], append: str = "") -> bool:
    """The training template ``text`` passes every check of the proof on ``cases`` (the probes):
    unchanged renderings, masks equal to the oracle's, no touching blocks. A two-pass region
    rewrites the order in which a block's parts are evaluated, so it is kept only when this holds
    (the proof then checks generated conversations)."""
    try:
        training = Analysed(text).compiled
    except Exception:  # noqa: BLE001 - an unparsable rewrite is a rewrite that does not hold
        return False
    for case in cases:
        if original.oracle(case) is None:
            continue
        result = check_renderings(Renderings(original.compiled, case, original.renderings, original.policy),
                                  Renderings(training, case, policy=original.policy), append=append)
        if not result.ok:
            return False
    return True


def assemble(template: Template, regions: list[Region]) -> str:
    """Insert the generation markers of ``regions`` into ``template``'s source."""
    editor = Editor(template)
    source = template.source
    reps: list[tuple[int, int, str]] = []
    for r in regions:
        s, e = editor.normalize(r.start), editor.normalize(r.end)
        lms, rms = editor.mods(s)
        lme, rme = editor.mods(e)
        body = source[s:e]
        if r.generated_first:
            text = block_tag("generation", lms, rms) + _generated_first(editor, r)
        elif r.roles is not None:
            text = _two_pass(editor, r, e) + block_tag("endgeneration", lme, "" if r.condition else rme)
            text += block_tag("endif", "", rme) if r.condition else ""
        elif r.condition is None:
            text = block_tag("generation", lms, rms) + body + block_tag("endgeneration", lme, rme)
        else:
            text = (
                block_tag(f"if {r.condition}", lms) + block_tag("generation", "", rms) + body
                + block_tag("endgeneration", lme) + block_tag("else", "", rms) + body + block_tag("endif", lme, rme)
            )
        reps.append((s, e, text))
    return editor.apply([], reps)


_NOTE = {"in": "prompt", "out": "generated"}  # what a stand-in replaces in each pass


def _two_pass(editor: Editor, region: Region, end: int) -> str:
    """A two-pass region (:meth:`tmplc.plan.Planner.window`) written as its prompt parts, then
    ``{% generation %}`` and its generated parts (without the closing tag). ``end`` is the region's
    end as a source offset (normalised); nodes that write only generated text are left out of the
    prompt pass after its last prompt part."""
    roles = region.roles or {}
    nodes = region.nodes
    last = max(k for k, n in enumerate(nodes) if roles.get(id(n)) not in ("in", "both"))
    before = _collapse(_project_all(editor, nodes[: last + 1], roles, "out", True))
    guard = region.condition
    if guard is not None:  # inside the guarded block, a node under the guard is always written
        roles = {k: ("in" if v == "if:" + guard else v) for k, v in roles.items()}
    inside = _project_all(editor, nodes, roles, "in", True)
    inside = _collapse(inside[: len(inside) - (region.end - end)] if end < region.end else inside)
    return before + ("" if guard is None else "{% if " + guard + " %}") + "{% generation %}" + inside


def _generated_first(editor: Editor, region: Region) -> str:
    """A region of :meth:`tmplc.plan.Planner.tail` after its opening tag: every node's generated
    parts, ``{% endgeneration %}``, then the prompt parts of its nodes from the first one that
    writes any (a ``set`` both copies need, the block that ends the region)."""
    roles = region.roles or {}
    nodes = region.nodes
    first = min(k for k, n in enumerate(nodes) if roles.get(id(n)) != "in")
    inside = _collapse(_project_all(editor, nodes, roles, "in", True))
    after = _collapse(_project_all(editor, nodes[first:], roles, "out", True))
    return inside + "{% endgeneration %}" + after


def _project(editor: Editor, node: Node, roles: dict[int, str], keep: str) -> str:
    """``node``'s source for one pass of a two-pass region (``keep``: ``"in"`` or ``"out"``):
    kept, dropped (a text run) or replaced by a comment with the same whitespace effect, wrapped
    in ``{% if %}`` for a conditional node, clause by clause for a split block."""
    source = editor.source
    role = roles.get(id(node), "in")
    if role in ("both", keep):
        return source[node.start : node.end]
    if role.startswith("if:"):
        cond = role[3:] if keep == "in" else negate(role[3:])
        (lms, rms), (lme, rme) = editor.mods(node.start), editor.mods(node.end)
        return block_tag(f"if {cond}", lms, rms) + source[node.start : node.end] + block_tag("endif", lme, rme)
    if role == "split" and isinstance(node, Block):
        bodies = [_project_all(editor, clause.body, roles, keep, False) for clause in node.clauses]
        hoisted = _hoisted(editor, node, bodies) if keep == "out" else None
        if hoisted is not None:
            return hoisted
        return "".join(source[c.tag.start : c.tag.end] + b for c, b in zip(node.clauses, bodies)) \
            + source[node.end_tag.start : node.end]
    return "" if isinstance(node, Text) else stand_in(node, _NOTE[keep])


_JOIN = re.compile(r"\{#tmplc-join:[^#]*#\}")


def _edge(tag_text: str, right: bool) -> str:
    """Whitespace effect of the tag at one edge of ``tag_text`` (as :func:`tmplc.edits.stand_in`):
    ``-`` strips, ``+`` leaves the text alone, ``""`` trims one newline / strips the indentation."""
    mod = tag_text[-3] if right else tag_text[2]
    if mod in "-+":
        return mod
    return "+" if tag_text.startswith("{{") and not right or tag_text.endswith("}}") and right else ""


def _hoisted(editor: Editor, node: Block, bodies: list[str]) -> str | None:
    """The prompt copy of an ``if`` whose clauses, ``else`` included, all write the same thing
    (the shared cue of the assistant branches): that thing alone, moved out of the ``if``. None
    unless every clause's projected body is the same tags (join notes aside) and the whitespace
    around them is removed in every clause and treated alike on both sides of the ``if``."""
    cores = [b.strip() for b in bodies]
    if node.name != "if" or node.clauses[-1].tag.name != "else" or not cores[0]:
        return None
    if len({_JOIN.sub("", c) for c in cores}) != 1 or not (cores[0][:1] == "{" and cores[0][-1:] == "}"):
        return None
    left, right = _edge(cores[0], False), _edge(cores[0], True)
    tags = [c.tag for c in node.clauses] + [node.end_tag]
    for k, body in enumerate(bodies):
        lead, trail = body[: len(body) - len(body.lstrip())], body[len(body.rstrip()) :]
        if lead and left != "-" and not (lead == "\n" and tags[k].right_mod == ""):
            return None
        if trail and right != "-" and tags[k + 1].left_mod != "-":
            return None
    before, after = editor.leaf_before(node.start), editor.leaf_after(node.end)
    if isinstance(before, Text) and left != (tags[0].left_mod or ""):
        return None
    if isinstance(after, Text) and right != (tags[-1].right_mod or "") and not _stripped(editor, after):
        return None
    return cores[0]


def _stripped(editor: Editor, text: Text) -> bool:
    """``text`` is whitespace that the tag after it strips (``{%-``, ``{{-``): whatever the tag
    before it did, it writes nothing."""
    nxt = editor.leaf_after(text.end)
    return not editor.source[text.start : text.end].strip() and getattr(nxt, "left_mod", "") == "-"


def _project_all(editor: Editor, nodes: list[Node], roles: dict[int, str], keep: str, text_around: bool) -> str:
    """Sibling ``nodes`` projected for one pass (:func:`_project`). A stand-in with no whitespace
    effect (``{#+ … +#}``) is left out unless it separates two text runs, which would otherwise
    become one (a ``-`` after them would then strip both). ``text_around``: the nodes before the
    first and after the last may be text runs."""
    parts = [_project(editor, n, roles, keep) for n in nodes]

    def text(k: int) -> bool:
        if k < 0 or k >= len(nodes):
            return text_around
        return isinstance(nodes[k], Text) and parts[k] != ""

    noop = "{#+ " + _NOTE[keep] + " +#}"
    return "".join("" if p == noop and not (text(k - 1) and text(k + 1)) else p for k, p in enumerate(parts))


def negate(cond: str) -> str:
    """The Jinja negation of the condition ``cond`` (``not (x)`` → ``x``, ``not x`` → ``x``)."""
    if cond.startswith("not (") and _closes_at_end(cond, 4):
        return cond[5:-1]
    if cond.startswith("not ") and " " not in cond[4:]:
        return cond[4:]
    if cond.startswith("(") and _closes_at_end(cond, 0):
        return f"not {cond}"
    return f"not ({cond})"


def _closes_at_end(text: str, k: int) -> bool:
    """The parenthesis opened at ``text[k]`` closes at the last character."""
    depth = 0
    for j, ch in enumerate(text[k:], k):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return j == len(text) - 1
    return False


_RUN = re.compile(r"\{#([-+]?) (prompt|generated) ([-+]?)#\}(?:\{#tmplc-join:[^#]*#\})?\{#([-+]?) \2 ([-+]?)#\}")
# A stand-in that strips the whitespace before it and writes nothing, followed by whitespace and a
# tag that strips the whitespace before it: all that whitespace is stripped without it too.
_SPENT = re.compile(r"[ \t\r\n]*\{#- (?:prompt|generated) [-+]?#\}(?=[ \t\r\n]*\{[{%#]-)")


def _collapse(text: str) -> str:
    """Merge runs of stand-in comments (and locating join notes between them) into one, and drop
    those whose whitespace effect the next tag has anyway."""
    while True:
        new = _RUN.sub(lambda m: "{#" + m.group(1) + " " + m.group(2) + " " + m.group(5) + "#}", text)
        if new == text:
            return _SPENT.sub("", text)
        text = new
