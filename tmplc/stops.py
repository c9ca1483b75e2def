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

**Read ahead.** Generated text that, in some trace, directly follows generated text written
later in the loop body (so by an earlier iteration) is a marker too, but the iteration that
writes it need not be the next one: DiffusionGemma's history turn content is followed by the
next assistant's own ``<|turn>model\n`` two iterations later, the tool message between writing
nothing. Its code is read for the first later message that writes anything (:class:`_Ahead`):
``{% for ITEM in (ITER | list)[loop.index0:] %}`` scans the loop's items from the current one,
stops at the first later item for which the body's one writing ``if`` holds (the gate), and
writes the marker there under its guards and the planner's condition. Names set inside the loop
are read as their definitions and a namespace attribute set at the end of every iteration as its
value for the previous item (``ns.prev_non_tool_role``).
"""

from __future__ import annotations

from collections.abc import Callable

from .edits import Editor, block_tag
from .locate import IN, Evidence
from .plan import Region
from .syntax import Block, Node, Output, Statement, Tag, Template, Text, parse, targets
from .trace import Instrumented, Site, loop_var

# loop.<attr> of the next iteration, read from the current one.
_NEXT_LOOP = {"first": "false", "last": "(loop.revindex0 == 1)", "index0": "(loop.index0 + 1)",
              "index": "(loop.index + 1)", "revindex0": "(loop.revindex0 - 1)", "revindex": "(loop.revindex - 1)",
              "length": "loop.length"}


class _Unreadable(Exception):
    """A marker or a guard that cannot be read for the next message."""


FLAGS = "tmplc_stop"  # the namespace whose attributes say "the previous turn wrote this marker"


Assignments = dict[str, list[tuple[Node, tuple[Block, ...]]]]


def _assignments(template: Template, loop: Block) -> Assignments:
    """Every assignment in the body of ``loop``, by what it assigns: a name (``"x"``: ``{% set x
    %}``, an inner loop's target) or a namespace attribute (``"ns.x"``: ``{% set ns.x %}``), each
    with the assigning node and its enclosing blocks, in source order."""
    out: Assignments = {}
    for node, stack in template.walk():
        if loop not in stack:
            continue
        for target in targets(node):
            keys = (["".join(t.text for t in target)] if len(target) == 3 and target[1].text == "."
                    else [t.text for t in target if t.kind == "NAME"])
            for key in keys:
                out.setdefault(key, []).append((node, stack))
    return out


def _assigned(template: Template, loop: Block) -> tuple[set[str], dict[str, list[int]]]:
    """What the body of ``loop`` assigns (:func:`_assignments`): names, and namespace attributes
    with the offsets of their assignments."""
    found = _assignments(template, loop)
    names = {key for key in found if "." not in key} - {"loop"}
    attrs = {key: [node.start for node, _ in at] for key, at in found.items() if "." in key}
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


def _names(tokens, rename: Callable[[str, str | None], tuple[str, bool]]) -> str:
    """Jinja code of ``tokens`` (an expression, whitespace tokens included) with every name that
    is not itself an attribute passed through ``rename(name, attr)`` (``attr``: the attribute
    read right after it, ``name.attr``, or None), which returns the replacement and whether it
    replaces ``.attr`` too; whitespace is kept, the result stripped."""
    toks = list(tokens)
    sig = [k for k, t in enumerate(toks) if t.kind != "WS"]
    out: list[str] = []
    k = 0
    while k < len(toks):
        t = toks[k]
        pos = sig.index(k) if t.kind != "WS" else -1
        if t.kind != "NAME" or (pos > 0 and toks[sig[pos - 1]].text == "."):
            out.append(t.text)
            k += 1
            continue
        dotted = pos + 2 < len(sig) and toks[sig[pos + 1]].text == "." and toks[sig[pos + 2]].kind == "NAME"
        text, consumed = rename(t.text, toks[sig[pos + 2]].text if dotted else None)
        out.append(text)
        k = sig[pos + 2] + 1 if consumed else k + 1
    return "".join(out).strip()


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

    def rename(name: str, attr: str | None) -> tuple[str, bool]:
        if name == var:
            return "loop.nextitem", False
        if name == "loop":
            if attr is None or not (attr == "previtem" or attr in _NEXT_LOOP):
                raise _Unreadable(f"loop.{attr or ''}")
            return (var if attr == "previtem" else _NEXT_LOOP[attr]), True
        if name in local or (attr is not None and f"{name}.{attr}" in stale):
            raise _Unreadable(name)
        return name, False

    return _names(tokens, rename)


def _clause_bounds(block: Block, offset: int) -> tuple[int, int]:
    """The source range of the clause of ``block`` that holds ``offset`` (tag included)."""
    starts = [c.tag.start for c in block.clauses] + [block.end_tag.start]
    k = max(i for i in range(len(block.clauses)) if starts[i] <= offset)
    return starts[k], starts[k + 1]


class _Ahead:
    """Reads code of a later iteration ``j`` of the message loop from inside a scan over the
    loop's items that starts at the current one (``{% for ITEM in (ITER | list)[loop.index0:] %}``):
    the loop variable becomes :data:`ITEM`; ``loop.previtem``, ``nextitem``, ``last`` and
    ``revindex*`` are the scan's own (the two loops share their tail), ``loop.first`` is false; a
    name set inside the loop body is read as its definition (one plain ``set``, before the point
    read and in every clause that holds it); a namespace attribute set once, at the top level of
    the body after the point read, holds that expression evaluated for the previous item.

    Raises:
        _Unreadable: anything else set inside the loop, another ``loop`` attribute, a loop whose
            items are not its iterable's (a ``for ... if`` filter, ``recursive``).
    """

    ITEM = "tmplc_item"

    def __init__(self, template: Template, loop: Block):
        var = loop_var(loop)
        sig = loop.clauses[0].tag.sig()
        if var is None or any(t.text in ("if", "recursive") for t in sig[3:]):
            raise _Unreadable("loop target")
        self.var, self.loop = var, loop
        self.sets = _assignments(template, loop)
        tag = loop.clauses[0].tag
        self.items = self._outside(tag.toks[next(k for k, t in enumerate(tag.toks) if t.text == "in") + 1:])

    def _sets(self, name: str, attr: str | None) -> bool:
        return (attr is not None and f"{name}.{attr}" in self.sets) or name in self.sets

    def _outside(self, tokens, var: str | None = None) -> str:
        """Code that reads nothing the loop sets nor ``loop``, as it is; the loop variable as
        ``var`` (unreadable when None)."""

        def rename(name: str, attr: str | None) -> tuple[str, bool]:
            if name == self.var and var is not None:
                return var, False
            if name in (self.var, "loop") or self._sets(name, attr):
                raise _Unreadable(name)
            return name, False

        return _names(tokens, rename)

    def read(self, tokens, at: int, depth: int = 0) -> str:
        """``tokens`` as evaluated at source offset ``at`` of iteration ``j``."""

        def rename(name: str, attr: str | None) -> tuple[str, bool]:
            if name == self.var:
                return self.ITEM, False
            if name == "loop":
                if attr in ("previtem", "nextitem", "last", "revindex", "revindex0"):
                    return f"loop.{attr}", True
                if attr == "first":
                    return "false", True
                raise _Unreadable(f"loop.{attr or ''}")
            if attr is not None and f"{name}.{attr}" in self.sets:
                return f"({self._previous(f'{name}.{attr}', at)})", True
            if name in self.sets:
                return f"({self._definition(name, at, depth)})", False
            return name, False

        return _names(tokens, rename)

    def _value(self, key: str) -> tuple[Node, tuple[Block, ...], list]:
        """The one plain ``{% set key = expr %}`` of the loop: its node, blocks and ``expr``."""
        found = self.sets[key]
        node, stack = found[0]
        if len(found) != 1 or not isinstance(node, Statement):
            raise _Unreadable(key)
        toks = node.tag.toks
        eq = next((k for k, t in enumerate(toks) if t.text == "="), None)
        if eq is None:
            raise _Unreadable(key)
        return node, stack, toks[eq + 1:]

    def _definition(self, name: str, at: int, depth: int) -> str:
        node, stack, expr = self._value(name)
        inner = stack[stack.index(self.loop) + 1:]
        if depth > 8 or node.start >= at or any(b.name != "if" for b in inner):
            raise _Unreadable(name)
        for block in inner:
            lo, hi = _clause_bounds(block, node.start)
            if not lo <= at < hi:
                raise _Unreadable(name)
        return self.read(expr, node.start, depth + 1)

    def _previous(self, key: str, at: int) -> str:
        node, stack, expr = self._value(key)
        if (stack[-1] is not self.loop or node.start <= at or key.split(".")[0] in self.sets
                or _clause_bounds(self.loop, node.start)[0] != self.loop.start):
            raise _Unreadable(key)  # not set once at the end of every iteration, or a fresh namespace each
        return self._outside(expr, "loop.previtem")

    def gate(self, evidence: Evidence, inst: Instrumented) -> str:
        """The test under which an iteration writes anything, read for the scanned item: that of
        the one top-level node of the body that ever wrote text in ``evidence``, when it is an
        ``if`` without ``elif``/``else``; ``"true"`` otherwise."""
        wrote = {sid for sid, items in evidence.labels.items() if any(it.emission.end > it.emission.start for it in items)}
        writers = {id(n): n for s in inst.sites if s.id in wrote for n in self.loop.clauses[0].body
                   if s.node is n or n in s.stack}
        only = next(iter(writers.values())) if len(writers) == 1 else None
        if not isinstance(only, Block) or only.name != "if" or len(only.clauses) != 1:
            return "true"
        return self.read(_test(only.clauses[0].tag), only.start)

    def scan(self, gate: str, cond: str, flag: str, text: str) -> str:
        """Code that, at the end of the current turn, writes the marker the next item passing
        ``gate`` writes (under ``cond``) and sets ``flag``."""
        item = self.ITEM
        return ("{% set tmplc_ahead = namespace(done=false) %}"
                f"{{% for {item} in ({self.items} | list)[loop.index0:] %}}"
                f"{{% if not loop.first and not tmplc_ahead.done and ({gate}) %}}{{% set tmplc_ahead.done = true %}}"
                f"{{% if {cond} %}}{{% set {flag} = true %}}{{{{ {text} }}}}{{% endif %}}"
                "{% endif %}{% endfor %}")


Reader = Callable[[list, int], str]  # (expression tokens, source offset) → the code read elsewhere


def _test(tag: Tag) -> list:
    """The tokens of an ``if``/``elif`` tag's test, whitespace included (after the keyword)."""
    keyword = next(k for k, t in enumerate(tag.toks) if t.kind != "WS")
    return tag.toks[keyword + 1:]


def _guards(site: Site, loop: Block, read: Reader) -> list[str]:
    """The ``if`` tests (each read with ``read``) under which ``site``'s node is written."""
    inner = site.stack[site.stack.index(loop) + 1:]
    tests: list[str] = []
    for block in inner:
        if block.name != "if":
            raise _Unreadable(block.name)
        for clause in block.clauses:
            test = read(_test(clause.tag), clause.tag.start) if clause.tag.name in ("if", "elif") else ""
            bounds = clause.body[0].start if clause.body else clause.tag.end, clause.body[-1].end if clause.body else clause.tag.end
            if bounds[0] <= site.node.start < bounds[1]:
                if test:
                    tests.append(f"({test})")
                break
            if test:
                tests.append(f"not ({test})")
    return tests


def _marker_text(site: Site, evidence: Evidence, read: Reader) -> str:
    """One Jinja expression writing the marker's node: a text run as the text it was traced
    writing (whitespace control applied), a ``{{ }}`` node read with ``read``."""
    node = site.node
    if isinstance(node, Text):
        texts = {evidence.emitted(it) for it in evidence.labels.get(site.id, []) if it.label == IN}
        if len(texts) != 1:
            raise _Unreadable("text")
        return repr(texts.pop())
    if isinstance(node, Output):
        return f"({read(node.toks, node.start)})"
    raise _Unreadable(type(node).__name__)


def _generated_ends(evidence: Evidence) -> dict[tuple[int, int], int]:
    """``(trace, end offset) → site`` of every non-empty generated emission."""
    return {(it.emission.trace, it.emission.end): it.emission.site for items in evidence.labels.values()
            for it in items if it.label == IN and it.emission.end > it.emission.start}


def _turn_region(site: Site, evidence: Evidence, regions: list[Region], markers: list[Region],
                 by_id: dict[int, Site], everywhere: bool = True) -> Region:
    """The region that writes the generated text right before the marker: in every trace where
    the marker is generated (``everywhere``), or in every trace where generated text is there."""
    ends = _generated_ends(evidence)
    found: set[int] = set()
    for it in evidence.labels.get(site.id, []):
        if it.label == IN:
            before = ends.get((it.emission.trace, it.emission.start))
            if before is None and everywhere:
                raise _Unreadable("nothing generated right before the marker")
            if before is not None:
                found.add(before)
    owners = {id(r) for s in found for r in regions if r.start <= by_id[s].node.start < r.end}
    if len(owners) != 1:
        raise _Unreadable("not one region before the marker")
    region = next(r for r in regions if id(r) in owners)
    if region in markers:
        raise _Unreadable("the turn's region is itself a marker")
    return region


def _markers(inst: Instrumented, evidence: Evidence, regions: list[Region]) -> list[tuple[Region, Site, bool]]:
    """The regions that write a next message's opening marker, each with the one output node
    that writes it and whether it is read ahead over silent iterations: generated text written
    while the message loop is at a message that is not an assistant (the ``role`` atom of the
    node's innermost loop is false on every generated emission, and true on some emission of
    that loop: it iterates the messages), a region the planner made conditional on the previous
    message being an assistant, or (ahead) generated text that follows, in some trace, generated
    text written later in the loop body, hence by an earlier iteration (DiffusionGemma's own
    ``<|turn>model\n`` after a tool result, two iterations after the turn's content)."""
    prev = {f"({a.text})" for s in inst.sites for a in s.atoms if a.kind == "prev_assistant"}
    assistant_loops = {a.scope for items in evidence.labels.values() for it in items
                       for a, v in it.emission.atoms.items() if a.kind == "role" and v}
    ends, by_id = _generated_ends(evidence), {s.id: s for s in inst.sites}
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
        befores = [by_id[b] for it in generated if (b := ends.get((it.emission.trace, it.emission.start))) is not None]
        ahead = any(b.node.start >= r.end and site.loops[-1] in b.loops for b in befores)
        if r.condition in prev or by_role or ahead:
            found.append((r, site, not (r.condition in prev or by_role)))
    return found


def _read_next(template: Template, loop: Block, site: Site, evidence: Evidence, turn: Region, flag: str) -> str:
    """The code written at the end of the turn: the next item's marker, when it writes one."""
    scope = _Scope(template, loop, turn.end, site.node.start)

    def read(tokens, _at: int) -> str:
        return for_next(tokens, scope.var, scope.local, scope.stale)

    cond = " and ".join(["loop.nextitem is defined"] + _guards(site, loop, read))
    return "{% if " + cond + f" %}}{{% set {flag} = true %}}{{{{ " + _marker_text(site, evidence, read) + " }}{% endif %}"


def _read_ahead(template: Template, loop: Block, site: Site, evidence: Evidence, inst: Instrumented,
                region: Region, flag: str) -> str:
    """The code written at the end of the turn: the marker of the first later item that writes
    anything (:meth:`_Ahead.gate`), when it writes one and it is generated there (``region``'s
    condition, read for that item)."""
    ahead = _Ahead(template, loop)
    tests = _guards(site, loop, ahead.read)
    if region.condition is not None:
        output = parse("{{ " + region.condition + " }}").body[0]
        assert isinstance(output, Output)  # the planner's conditions are expressions
        tests.append(f"({ahead.read(output.toks, site.node.start)})")
    return ahead.scan(ahead.gate(evidence, inst), " and ".join(tests or ["true"]), flag,
                      _marker_text(site, evidence, ahead.read))


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
    for region, site, ahead in markers:
        flag = f"{FLAGS}.m{len(loops)}"
        try:
            loop = site.loops[-1]
            turn = _turn_region(site, evidence, regions, [m for m, _, _ in markers], by_id, everywhere=not ahead)
            turn_loops = [b for b in stacks.get(id(turn.nodes[0]), ()) if b.name == "for"]
            if not turn_loops or turn_loops[-1] is not loop:
                raise _Unreadable("the turn is written in another loop")
            code = (_read_ahead(template, loop, site, evidence, inst, region, flag) if ahead
                    else _read_next(template, loop, site, evidence, turn, flag))
        except _Unreadable:
            continue
        loops[len(loops)] = loop
        s, e = site.node.start, site.node.end
        (lms, rms), (lme, rme) = editor.mods(s), editor.mods(e)
        reps.append((s, e, "{%" + lms + f" if {flag} %}}{{% set {flag} = false %}}{{% else " + rms + "%}"
                     + template.source[s:e] + block_tag("endif", lme, rme)))
        appended.setdefault(editor.normalize(turn.end), []).append(code)
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
