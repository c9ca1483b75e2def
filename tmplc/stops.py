"""Move the next message's opening marker into the previous assistant turn's generation block.

For a template that writes no end-of-turn text (GLM-4-MoE's ``<|user|>``/``<|observation|>``,
``\\n\\nUser:`` formats), the oracle ends a history turn with the opening marker of the message
that follows (docs/oracle.md, "The stop belongs to the turn"). The planner masks it where the
template writes it, in a block conditional on "the previous message is an assistant"; but at the
token level generated text that is contiguous in the rendering must be one block
(``../shared/design/README.md``: transformers maps each span on its own). This transform moves
the marker, rendering byte for byte the same:

* where the marker is written, it is guarded: ``{% if not (PREV) %}MARKER{% endif %}``;
* at the end of the assistant turn's last generation region, inside it,
  ``{% if loop.nextitem is defined and COND' %}{{ MARKER' }}{% endif %}``: ``COND'`` is the chain
  of ``if`` tests that lead to the marker's node and ``MARKER'`` its text, both read for the next
  message (the loop variable becomes ``loop.nextitem``, ``loop.index0`` becomes
  ``loop.index0 + 1``...).

The marker, its guards and the turn it joins come from the trace (the regions the planner made
conditional on the previous message being an assistant, and the emission that ends where the
marker starts), never from names. The idea is TRL's hand-written glm4moe_training (PR #5988).
Anything this transform cannot read for the next message (a variable set inside the loop, a
node other than text or ``{{ }}``) leaves the template as planned; the proof checks the result.
"""

from __future__ import annotations

from .edits import Editor
from .locate import IN, Evidence
from .plan import Region
from .syntax import Block, Node, Output, Statement, Template, Text
from .trace import Instrumented, Site

# loop.<attr> of the next iteration, read from the current one.
_NEXT_LOOP = {"first": "false", "last": "(loop.revindex0 == 1)", "index0": "(loop.index0 + 1)",
              "index": "(loop.index + 1)", "revindex0": "(loop.revindex0 - 1)", "revindex": "(loop.revindex - 1)",
              "length": "loop.length"}


class _Unreadable(Exception):
    """A marker or a guard that cannot be read for the next message."""


def _loop_locals(template: Template, loop: Block) -> set[str]:
    """Names assigned inside ``loop`` (``{% set x %}``, ``{% set ns.x %}``, inner loop targets)."""
    names: set[str] = set()
    for node, stack in template.walk():
        if loop not in stack:
            continue
        tag = node.tag if isinstance(node, Statement) else node.clauses[0].tag if isinstance(node, Block) else None
        if tag is not None and tag.name in ("set", "for"):
            sig = tag.sig()
            names.update(t.text for t in sig[1:] if t.kind == "NAME" and t.text != "in")
            names.discard("loop")
    return names


def for_next(tokens, var: str, local: set[str]) -> str:
    """Jinja code of ``tokens`` (an expression, whitespace tokens included) evaluated for the next
    item of the loop over ``var``, from the current iteration; whitespace is kept.

    Raises:
        _Unreadable: the code reads a name assigned inside the loop, or an unknown ``loop`` attribute.
    """
    toks = list(tokens)
    sig = [k for k, t in enumerate(toks) if t.kind != "WS"]
    out: list[str] = []
    k = 0
    while k < len(toks):
        t = toks[k]
        pos = sig.index(k) if t.kind != "WS" else -1
        after_dot = pos > 0 and toks[sig[pos - 1]].text == "."
        if t.kind != "NAME" or after_dot:
            out.append(t.text)
        elif t.text == var:
            out.append("loop.nextitem")
        elif t.text == "loop":
            dot, attr = (toks[sig[pos + 1]], toks[sig[pos + 2]]) if pos + 2 < len(sig) else (None, None)
            if dot is None or attr is None or dot.text != "." or not (attr.text == "previtem" or attr.text in _NEXT_LOOP):
                raise _Unreadable(f"loop.{attr.text if attr else ''}")
            out.append(var if attr.text == "previtem" else _NEXT_LOOP[attr.text])
            k = sig[pos + 2]
        elif t.text in local:
            raise _Unreadable(t.text)
        else:
            out.append(t.text)
        k += 1
    return "".join(out).strip()


def _guards(site: Site, loop: Block, var: str, local: set[str]) -> list[str]:
    """The ``if`` tests (read for the next item) under which ``site``'s node is written."""
    inner = site.stack[site.stack.index(loop) + 1:]
    tests: list[str] = []
    for block in inner:
        if block.name != "if":
            raise _Unreadable(block.name)
        for clause in block.clauses:
            keyword = next(k for k, t in enumerate(clause.tag.toks) if t.kind != "WS")
            test = for_next(clause.tag.toks[keyword + 1:], var, local) if clause.tag.name in ("if", "elif") else ""
            bounds = clause.body[0].start if clause.body else clause.tag.end, clause.body[-1].end if clause.body else clause.tag.end
            if bounds[0] <= site.node.start < bounds[1]:
                if test:
                    tests.append(f"({test})")
                break
            if test:
                tests.append(f"not ({test})")
    return tests


def _marker_text(nodes: list[Node], sites: dict[int, Site], evidence: Evidence, source: str,
                 var: str, local: set[str]) -> str:
    """One Jinja expression writing the marker's nodes: a text run as the text it was traced
    writing (whitespace control applied), a ``{{ }}`` node read for the next item."""
    parts = []
    for node in nodes:
        site = sites.get(id(node))
        if isinstance(node, Text) and site is not None:
            texts = {evidence.emitted(it) for it in evidence.labels.get(site.id, []) if it.label == IN}
            if len(texts) != 1:
                raise _Unreadable("text")
            parts.append(repr(texts.pop()))
        elif isinstance(node, Output):
            parts.append(f"({for_next(node.toks, var, local)})")
        else:
            raise _Unreadable(type(node).__name__)
    if not parts:
        raise _Unreadable("empty")
    return " ~ ".join(parts)


def _turn_region(site: Site, evidence: Evidence, regions: list[Region], markers: list[Region],
                 by_id: dict[int, Site]) -> Region:
    """The region that writes the generated text right before the marker, in every trace."""
    ends = {}
    for items in evidence.labels.values():
        for it in items:
            e = it.emission
            if it.label == IN and e.end > e.start:
                ends[(e.trace, e.end)] = e.site
    found: set[int] = set()
    for it in evidence.labels.get(site.id, []):
        if it.label == IN:
            before = ends.get((it.emission.trace, it.emission.start))
            if before is None:
                raise _Unreadable("nothing generated right before the marker")
            found.add(before)
    owners = {id(r) for s in found for r in regions if r.start <= by_id[s].node.start < r.end}
    if len(owners) != 1:
        raise _Unreadable("not one region before the marker")
    region = next(r for r in regions if id(r) in owners)
    if region in markers:
        raise _Unreadable("the turn's region is itself a marker")
    return region


def move_markers(template: Template, inst: Instrumented, evidence: Evidence, regions: list[Region],
                 append: str = "") -> str | None:
    """The template text with every next-message marker moved into the previous assistant turn's
    generation region (module docstring), or None when there is none or one cannot be moved.

    Args:
        template: the (split) template the regions were planned on; ``inst`` its instrumented
            copy; ``evidence`` the labelled trace; ``regions`` the planned regions.
        append: ``--append-stop``'s text, also written after a final assistant turn (without the
            generation prompt) inside the same block: TRL PR #6044, a declared rendering change.
    """
    prev = {f"({a.text})" for s in inst.sites for a in s.atoms if a.kind == "prev_assistant"}
    markers = [r for r in regions if r.condition in prev]
    if not markers:
        return None
    sites = {id(s.node): s for s in inst.sites}
    by_id = {s.id: s for s in inst.sites}
    stacks = {id(node): stack for node, stack in template.walk()}
    editor = Editor(template)
    reps: list[tuple[int, int, str]] = []
    appended: dict[int, list[str]] = {}
    try:
        for r in markers:
            first = sites.get(id(r.nodes[0]))
            if first is None or not first.loops:
                raise _Unreadable("untraced marker")
            loop = first.loops[-1]
            sig = loop.clauses[0].tag.sig()
            if len(sig) < 4 or sig[2].text != "in":
                raise _Unreadable("loop target")
            var, local = sig[1].text, _loop_locals(template, loop)
            cond = " and ".join(["loop.nextitem is defined"] + _guards(first, loop, var, local))
            text = _marker_text(r.nodes, sites, evidence, template.source, var, local)
            turn = _turn_region(first, evidence, regions, markers, by_id)
            loops = [b for b in stacks.get(id(turn.nodes[0]), ()) if b.name == "for"]
            if not loops or loops[-1] is not loop:
                raise _Unreadable("the turn is written in another loop")
            s, e = editor.normalize(r.start), editor.normalize(r.end)
            (lms, rms), (lme, rme) = editor.mods(s), editor.mods(e)
            body = template.source[s:e]
            reps.append((s, e, _tag(f"if not {r.condition}", lms, rms) + body + _tag("endif", lme, rme)))
            appended.setdefault(editor.normalize(turn.end), []).append(
                "{% if " + cond + " %}{{ " + text + " }}{% endif %}")
    except _Unreadable:
        return None
    for pos, parts in appended.items():
        if append:
            parts.append("{% if loop.last and not add_generation_prompt %}{{ " + repr(append) + " }}{% endif %}")
        lm, rm = editor.mods(pos)
        inner = "".join(parts)  # "{% if ... %}...{% endif %}": the outer tags take the neighbours' effect
        reps.append((pos, pos, "{%" + lm + inner[2:-2] + rm + "%}"))
    try:
        return editor.apply([], reps)
    except ValueError:
        return None


def _tag(body: str, lm: str = "", rm: str = "") -> str:
    return "{%" + lm + " " + body + " " + rm + "%}"


__all__ = ["for_next", "move_markers"]
