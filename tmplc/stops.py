"""Move the next message's opening marker into the previous assistant turn's generation block.

For a template that writes no end-of-turn text (GLM-4-MoE's ``<|user|>``/``<|observation|>``,
``\\n\\nUser:`` formats), the oracle ends a history turn with the opening marker of the message
that follows (docs/oracle.md, "The stop belongs to the turn"). The planner masks it where the
template writes it, in a block conditional on "the previous message is an assistant"; but at the
token level generated text that is contiguous in the rendering must be one block
(``../shared/design/README.md``: transformers maps each span on its own). This transform moves
the marker, rendering byte for byte the same:

* at the end of the assistant turn's last generation region, inside it,
  ``{% if loop.nextitem is defined and COND' %}{% set tmplc_stop.mK = true %}{{ MARKER' }}{% endif %}``:
  ``COND'`` is the chain of ``if`` tests that lead to the marker's node and ``MARKER'`` its text,
  both read for the next message (the loop variable becomes ``loop.nextitem``, ``loop.index0``
  becomes ``loop.index0 + 1``...; a namespace attribute is read as it is when nothing assigns it
  between the end of the turn and the node);
* where the marker is written, it is skipped once when the previous turn wrote it:
  ``{% if tmplc_stop.mK %}{% set tmplc_stop.mK = false %}{% else %}MARKER{% endif %}``, with
  ``{% set tmplc_stop = namespace(mK=false) %}`` before the loop. The flag makes the two places
  agree whatever the marker's own guards are (GLM's ``loop.previtem`` test, Apertus's
  ``ns.in_assistant`` state).

The markers are the regions the planner made conditional on the previous message being an
assistant, and the generated text written while the loop is at a message that is not an
assistant (its ``role`` atom false on every generated emission); their node, its guards and the
turn it joins come from the trace, never from names. The idea is TRL's hand-written
glm4moe_training (PR #5988). A marker this transform cannot read for the next message (a name set
inside the loop, a node other than text or ``{{ }}``) stays where the plan put it; the proof
checks the result.
"""

from __future__ import annotations

from .edits import Editor, block_tag
from .locate import IN, Evidence
from .plan import Region
from .syntax import Block, Output, Template, Text, targets
from .trace import Instrumented, Site, loop_var

# loop.<attr> of the next iteration, read from the current one.
_NEXT_LOOP = {"first": "false", "last": "(loop.revindex0 == 1)", "index0": "(loop.index0 + 1)",
              "index": "(loop.index + 1)", "revindex0": "(loop.revindex0 - 1)", "revindex": "(loop.revindex - 1)",
              "length": "loop.length"}


class _Unreadable(Exception):
    """A marker or a guard that cannot be read for the next message."""


FLAGS = "tmplc_stop"  # the namespace whose attributes say "the previous turn wrote this marker"


def _assigned(template: Template, loop: Block) -> tuple[set[str], dict[str, list[int]]]:
    """What the body of ``loop`` assigns: names (``{% set x %}``, inner loop targets), and
    namespace attributes (``{% set ns.x %}``) with the offsets of their assignments."""
    names: set[str] = set()
    attrs: dict[str, list[int]] = {}
    for node, stack in template.walk():
        if loop not in stack:
            continue
        for target in targets(node):
            if len(target) == 3 and target[1].text == ".":
                attrs.setdefault(f"{target[0].text}.{target[2].text}", []).append(node.start)
            else:
                names.update(t.text for t in target if t.kind == "NAME")
    names.discard("loop")
    return names, attrs


class _Scope:
    """How to read, at the end of an assistant turn, code that runs in the next iteration.

    ``var``: the loop variable (read as ``loop.nextitem``); ``local``: names assigned inside the
    loop (unreadable: they belong to one iteration); ``stale``: namespace attributes assigned
    between the end of the turn and the node in the next iteration (unreadable: their value
    changes on the way). A namespace attribute assigned elsewhere keeps its value from the end
    of the turn to the next iteration's node, so it is read as it is.
    """

    def __init__(self, template: Template, loop: Block, turn_end: int, node_start: int):
        var = loop_var(loop)
        if var is None:
            raise _Unreadable("loop target")
        self.var = var
        self.local, attrs = _assigned(template, loop)
        self.stale = {a for a, offsets in attrs.items()
                      if any(p >= turn_end or p < node_start for p in offsets)}


def for_next(tokens, var: str, local: set[str], stale: frozenset[str] | set[str] = frozenset()) -> str:
    """Jinja code of ``tokens`` (an expression, whitespace tokens included) evaluated for the next
    item of the loop over ``var``, from the current iteration; whitespace is kept.

    Args:
        local: names assigned inside the loop; stale: namespace attributes (``"ns.x"``) whose
            value changes between the current iteration's read and the next one's (:class:`_Scope`).

    Raises:
        _Unreadable: the code reads a name assigned inside the loop, a stale namespace
            attribute, or an unknown ``loop`` attribute.
    """
    toks = list(tokens)
    sig = [k for k, t in enumerate(toks) if t.kind != "WS"]
    out: list[str] = []
    k = 0
    while k < len(toks):
        t = toks[k]
        pos = sig.index(k) if t.kind != "WS" else -1
        after_dot = pos > 0 and toks[sig[pos - 1]].text == "."
        dot, attr = (toks[sig[pos + 1]], toks[sig[pos + 2]]) if 0 <= pos and pos + 2 < len(sig) else (None, None)
        if t.kind != "NAME" or after_dot:
            out.append(t.text)
        elif t.text == var:
            out.append("loop.nextitem")
        elif t.text == "loop":
            if dot is None or attr is None or dot.text != "." or not (attr.text == "previtem" or attr.text in _NEXT_LOOP):
                raise _Unreadable(f"loop.{attr.text if attr else ''}")
            out.append(var if attr.text == "previtem" else _NEXT_LOOP[attr.text])
            k = sig[pos + 2]
        elif t.text in local:
            raise _Unreadable(t.text)
        elif dot is not None and attr is not None and dot.text == "." and f"{t.text}.{attr.text}" in stale:
            raise _Unreadable(f"{t.text}.{attr.text}")
        else:
            out.append(t.text)
        k += 1
    return "".join(out).strip()


def _guards(site: Site, loop: Block, scope: _Scope) -> list[str]:
    """The ``if`` tests (read for the next item) under which ``site``'s node is written."""
    inner = site.stack[site.stack.index(loop) + 1:]
    tests: list[str] = []
    for block in inner:
        if block.name != "if":
            raise _Unreadable(block.name)
        for clause in block.clauses:
            keyword = next(k for k, t in enumerate(clause.tag.toks) if t.kind != "WS")
            test = (for_next(clause.tag.toks[keyword + 1:], scope.var, scope.local, scope.stale)
                    if clause.tag.name in ("if", "elif") else "")
            bounds = clause.body[0].start if clause.body else clause.tag.end, clause.body[-1].end if clause.body else clause.tag.end
            if bounds[0] <= site.node.start < bounds[1]:
                if test:
                    tests.append(f"({test})")
                break
            if test:
                tests.append(f"not ({test})")
    return tests


def _marker_text(site: Site, evidence: Evidence, scope: _Scope) -> str:
    """One Jinja expression writing the marker's node: a text run as the text it was traced
    writing (whitespace control applied), a ``{{ }}`` node read for the next item."""
    node = site.node
    if isinstance(node, Text):
        texts = {evidence.emitted(it) for it in evidence.labels.get(site.id, []) if it.label == IN}
        if len(texts) != 1:
            raise _Unreadable("text")
        return repr(texts.pop())
    if isinstance(node, Output):
        return f"({for_next(node.toks, scope.var, scope.local, scope.stale)})"
    raise _Unreadable(type(node).__name__)


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


def _markers(inst: Instrumented, evidence: Evidence, regions: list[Region]) -> list[tuple[Region, Site]]:
    """The regions that write a next message's opening marker, each with the one output node
    that writes it: generated text written while the message loop is at a message that is not
    an assistant (the ``role`` atom of the node's innermost loop is false on every generated
    emission, and true on some emission of that loop: it iterates the messages), or a region
    the planner made conditional on the previous message being an assistant."""
    prev = {f"({a.text})" for s in inst.sites for a in s.atoms if a.kind == "prev_assistant"}
    assistant_loops = {a.scope for items in evidence.labels.values() for it in items
                       for a, v in it.emission.atoms.items() if a.kind == "role" and v}
    found = []
    for r in regions:
        inside = [s for s in inst.sites if r.start <= s.node.start < r.end
                  and any(it.label == IN for it in evidence.labels.get(s.id, []))]
        if len(inside) != 1 or not inside[0].loops:
            continue
        site = inside[0]
        role = next((a for a in site.atoms if a.kind == "role" and a.scope == site.loops[-1].start), None)
        generated = [it for it in evidence.labels.get(site.id, []) if it.label == IN]
        by_role = role is not None and role.scope in assistant_loops and all(
            it.emission.atoms.get(role) is False for it in generated)
        if r.condition in prev or by_role:
            found.append((r, site))
    return found


def move_markers(template: Template, inst: Instrumented, evidence: Evidence, regions: list[Region],
                 append: str = "") -> str | None:
    """The template text with every next-message marker that can be read for the next message
    moved into the previous assistant turn's generation region (module docstring), or None when
    none can be moved.

    Args:
        template: the (split) template the regions were planned on; ``inst`` its instrumented
            copy; ``evidence`` the labelled trace; ``regions`` the planned regions.
        append: ``--append-stop``'s text, also written after a final assistant turn (without the
            generation prompt) inside the same block: TRL PR #6044, a declared rendering change.
    """
    markers = _markers(inst, evidence, regions)
    by_id = {s.id: s for s in inst.sites}
    stacks = {id(node): stack for node, stack in template.walk()}
    editor = Editor(template)
    reps: list[tuple[int, int, str]] = []
    appended: dict[int, list[str]] = {}
    loops: dict[int, Block] = {}
    for _region, site in markers:
        flag = f"{FLAGS}.m{len(loops)}"
        try:
            loop = site.loops[-1]
            turn = _turn_region(site, evidence, regions, [m for m, _ in markers], by_id)
            turn_loops = [b for b in stacks.get(id(turn.nodes[0]), ()) if b.name == "for"]
            if not turn_loops or turn_loops[-1] is not loop:
                raise _Unreadable("the turn is written in another loop")
            scope = _Scope(template, loop, turn.end, site.node.start)
            cond = " and ".join(["loop.nextitem is defined"] + _guards(site, loop, scope))
            text = _marker_text(site, evidence, scope)
        except _Unreadable:
            continue
        loops[len(loops)] = loop
        s, e = site.node.start, site.node.end
        (lms, rms), (lme, rme) = editor.mods(s), editor.mods(e)
        reps.append((s, e, "{%" + lms + f" if {flag} %}}{{% set {flag} = false %}}{{% else " + rms + "%}"
                     + template.source[s:e] + block_tag("endif", lme, rme)))
        appended.setdefault(editor.normalize(turn.end), []).append(
            "{% if " + cond + f" %}}{{% set {flag} = true %}}{{{{ " + text + " }}{% endif %}")
    if not loops:
        return None
    for pos, parts in appended.items():
        if append:
            parts.append("{% if loop.last and not add_generation_prompt %}{{ " + repr(append) + " }}{% endif %}")
        lm, rm = editor.mods(pos)
        inner = "".join(parts)  # "{% if ... %}...{% endif %}": the outer tags take the neighbours' effect
        reps.append((pos, pos, "{%" + lm + inner[2:-2] + rm + "%}"))
    for start in sorted({b.start for b in loops.values()}):
        flags = ", ".join(f"m{k}=false" for k, b in loops.items() if b.start == start)
        lm, rm = editor.mods(start)
        reps.append((start, start, block_tag(f"set {FLAGS} = namespace({flags})", lm, rm)))
    try:
        return editor.apply([], reps)
    except ValueError:
        return None


__all__ = ["for_next", "move_markers"]
