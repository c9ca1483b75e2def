"""Plan where the markers go: runs of sibling nodes become generation regions.

Plain ``{% generation %}`` regions where every emission is *in* the oracle's mask, or
conditional regions ``{% if COND %}{% generation %}…{% endgeneration %}{% else %}…{% endif %}``
where a condition built from traced atoms (``message.role == "assistant"``, ``loop.first``,
``message.content``…) separates *in* from *out* emissions — the assistant-only branch for
role-generic turns. Input: the :class:`tmplc.locate.Evidence` of a template whose straddling
nodes are already split (:mod:`tmplc.split`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

from .edits import is_split_marker
from .locate import IN, OUT, STRADDLE, Evidence, Labelled
from .reasons import CannotAugment, Reason
from .syntax import Block, Comment, Node, Output, Statement, Template, Text, targets
from .trace import Atom, Instrumented, Site

LOOP_ATOMS = ("first", "last", "prev_assistant", "prev_tool")


@dataclass
class Region:
    """Sibling ``nodes`` that become one generation block.

    ``condition`` None: the block is always generated; a string: the block is generated where the
    condition holds and plain text elsewhere. ``roles`` (a two-pass region, see
    :meth:`Planner.window`): ``id(node)`` → how each node inside is written, ``"in"`` (inside the
    block only), ``"out"`` (before the block only), ``"both"``, ``"split"`` (a block whose clauses
    are projected) or ``"if:COND"`` (inside where COND holds, before it elsewhere).
    """

    nodes: list[Node]
    condition: str | None  # None: always; of a two-pass region: when its block is written
    roles: dict[int, str] | None = None
    generated_first: bool = False  # a two-pass region written generated parts first (Planner.tail)

    @property
    def start(self) -> int:
        return self.nodes[0].start

    @property
    def end(self) -> int:
        return self.nodes[-1].end



def _formulas(atoms: list[Atom]):
    lits = [(a, True) for a in atoms] + [(a, False) for a in atoms]
    for lit in lits:
        yield (lit,), "and"
    for x, y in itertools.combinations(lits, 2):
        if x[0] == y[0]:
            continue
        yield (x, y), "and"
        yield (x, y), "or"


def _text(formula) -> str:
    lits, op = formula

    def one(lit):
        atom, pos = lit
        t = atom.text if " " not in atom.text else f"({atom.text})"
        return t if pos else f"not {t}"

    if len(lits) == 1:
        return one(lits[0])
    return f" {op} ".join(one(lit) for lit in lits)


def find_condition(items: list[Labelled], allowed: list[Atom]) -> str | None:
    """The simplest condition over ``allowed`` atoms true on every *in* emission and false on
    every *out* one, as Jinja text; ``None`` when there is none."""
    common = [a for a in allowed if all(a in it.emission.atoms for it in items)]
    # A formula reads only these atoms: each distinct row of their values and the label is checked once.
    rows = {(tuple(it.emission.atoms[a] for a in common), it.label == IN) for it in items}
    checks = [(dict(zip(common, values)), inside) for values, inside in rows]
    for formula in _formulas(common):
        if all(_holds(formula, values) == inside for values, inside in checks):
            return _text(formula)
    return None


def _holds(formula, values: dict[Atom, bool]) -> bool:
    lits, op = formula
    vals = [values[a] == pos for a, pos in lits]
    return all(vals) if op == "and" else any(vals)


def _blocking(node: Node) -> bool:
    """A node that must not sit inside a generation block (whose body is a separate scope)."""
    if isinstance(node, Statement):
        if node.name == "set":
            sig = node.tag.sig()
            return not (len(sig) > 2 and sig[2].text == ".")
        return node.name in ("import", "from", "extends", "break", "continue", "include")
    if isinstance(node, Block):
        if node.name in ("macro", "set", "block"):
            return True
        if node.name == "for":
            return False
        return any(_blocking(n) for c in node.clauses for n in c.body)
    return False


class Planner:
    """Regions of a template from the labelled evidence of its (split) copy.

    Args:
        template: the template whose straddling nodes are split. inst: its instrumented copy.
        evidence: the labels of every emission (:func:`tmplc.locate.collect`).
        two_pass: write one block per contiguous generated run where the start of the generated
            text depends on the path taken (:meth:`window`); False: one block per run of nodes
            with one condition (the generated text of a turn may then span touching blocks).
    """

    def __init__(self, template: Template, inst: Instrumented, evidence: Evidence, two_pass: bool = True):
        self.template = template
        self.inst = inst
        self.evidence = evidence
        self.two_pass = two_pass
        self.site_of = {id(s.node): s for s in inst.sites}
        self._sites_cache: dict[int, list[Site]] = {}

    def sites_in(self, node: Node) -> list[Site]:
        key = id(node)
        if key not in self._sites_cache:
            if key in self.site_of:
                res = [self.site_of[key]]
            elif isinstance(node, Block):
                res = [s for c in node.clauses for n in c.body for s in self.sites_in(n)]
            else:
                res = []
            self._sites_cache[key] = res
        return self._sites_cache[key]

    def items(self, nodes: list[Node]) -> list[Labelled]:
        return [it for n in nodes for s in self.sites_in(n) for it in self.evidence.labels.get(s.id, [])]

    @staticmethod
    def allowed(stack: tuple[Block, ...], items: list[Labelled]) -> list[Atom]:
        fors = [b.start for b in stack if b.name == "for"]
        inner = fors[-1] if fors else None
        seen: dict[Atom, None] = {}
        for it in items:
            for a in it.emission.atoms:
                if a.scope == -1 or (a.kind in LOOP_ATOMS and a.scope == inner) or (
                    a.kind not in LOOP_ATOMS and a.scope in fors
                ):
                    seen.setdefault(a)
        return list(seen)

    def condition(self, nodes: list[Node], stack) -> str | None | bool:
        """``None``: always in; a string: the condition; ``False``: no region possible."""
        items = self.items(nodes)
        if not items or any(it.label == STRADDLE for it in items) or not any(it.label == IN for it in items):
            return False
        if all(it.label == IN for it in items):
            return None
        cond = find_condition(items, self.allowed(stack, items))
        return cond if cond is not None else False

    def plan(self) -> list[Region]:
        """The regions, in source order.

        Raises:
            CannotAugment: an output writes both prompt and generated text and cannot be split
                (``unsplittable-output``), or no traced condition separates its generated
                emissions from its prompt ones (``no-condition``).
        """
        regions: list[Region] = []
        self._plan(self.template.body, (), regions)
        return regions

    def _plan(self, body: list[Node], stack: tuple[Block, ...], regions: list[Region]) -> None:
        run: list[Node] = []
        cond: str | None | bool = False

        span = (body[0].start, body[-1].end) if body else (0, 0)

        def free(node: Node) -> bool:
            return not _blocking(node) or self.confined(node, *span)

        def close():
            nonlocal run, cond
            run = self._trimmed(run)
            if run and cond is not False:
                self._close(run, cond, stack, regions)  # type: ignore[arg-type]
            run, cond = [], False

        i = 0
        while i < len(body):
            node = body[i]
            i += 1
            items = self.items([node])
            if is_split_marker(node, self.template.source):
                close()
                continue
            if not items:
                if not free(node):
                    close()
                elif run:
                    run.append(node)
                continue
            has_in = any(it.label == IN for it in items)
            if not has_in and not any(it.label == STRADDLE for it in items):
                close()
                continue
            if free(node):
                c = self.condition([n for n in run if self.items([n])] + [node], stack)
                if c is not False and run:
                    run.append(node)
                    cond = c
                    continue
            tail = self.tail(run, node, stack) if self.two_pass and run and cond is None else None
            if tail is not None:
                regions.append(tail)
                run, cond = [], False
                continue
            close()
            window = self.window(body, i - 1, stack) if self.two_pass else None
            if window is not None:
                regions.append(window)
                i += len(window.nodes) - 1
                continue
            if not _blocking(node):  # a new run: a block that sets names is planned inside (narrower)
                c = self.condition([node], stack)
                if c is not False:
                    run, cond = [node], c
                    continue
            if isinstance(node, Block):
                for clause in node.clauses:
                    self._plan(clause.body, stack + (node,), regions)
                continue
            raise self._unplaceable(node, items)
        close()

    def _close(self, run: list[Node], cond: str | None, stack: tuple[Block, ...], regions: list[Region]) -> None:
        """Add ``run`` as a region; a plain ``set`` inside it whose name is read outside it (the
        block's body is a scope of its own) splits it there, each part with its own condition. A
        run whose only writer is an ``if`` that may write nothing is planned inside its branches
        (:meth:`_entered_empty`)."""
        inner = self._entered_empty(run)
        if inner:  # the blocks go inside the branches, which always write
            for block in inner:
                for clause in block.clauses:
                    self._plan(clause.body, stack + (block,), regions)
            return
        bad = next((k for k, n in enumerate(run) if _blocking(n) and not self.confined(n, run[0].start, run[-1].end)), None)
        if bad is None:
            regions.append(Region(list(run), cond))
            return
        for part in (self._trimmed(run[:bad]), self._trimmed(run[bad + 1:])):
            if part:
                c = self.condition([n for n in part if self.items([n])], stack)
                if c is not False:
                    self._close(part, c, stack, regions)  # type: ignore[arg-type]

    def _trimmed(self, run: list[Node], end: bool = True) -> list[Node]:
        """``run`` without the leading nodes that write nothing the trace saw (and the trailing
        ones, unless ``end`` is False)."""
        a, b = 0, len(run)
        while a < b and not self.items([run[a]]):
            a += 1
        while end and b > a and not self.items([run[b - 1]]):
            b -= 1
        return run[a:b]

    @cached_property
    def refs(self) -> dict[str, list[int]]:
        """Where each name is read or assigned in the template (:func:`_references`)."""
        return _references(self.template)

    def confined(self, node: Node, start: int, end: int) -> bool:
        """Every name ``node``'s plain ``set`` statements assign (nested ones too) is read and
        written only within source offsets ``[start, end)``: inside a generation block, whose
        body is a scope of its own, the ``set`` then changes nothing outside it. False for a
        node that blocks for another reason (``{% set %}`` blocks, macros, imports...)."""
        names = _set_names(node)
        if names is None:
            return False
        return all(start <= p < end for n in names for p in self.refs.get(n, ()))

    def _unplaceable(self, node: Node, items: list[Labelled]) -> CannotAugment:
        """Why ``node`` (an output, not a block) gets no region, with a probe that shows it."""
        site = self.site_of.get(id(node))
        example = self.evidence.cases.get(next((it.emission.trace for it in items if it.label != OUT), -1))
        if any(it.label == STRADDLE for it in items):
            return CannotAugment(Reason.UNSPLITTABLE_OUTPUT,
                                 f"{self.template.where(node)}: one output writes both prompt and generated text", example)
        return CannotAugment(
            Reason.NO_CONDITION,
            f"{self.template.where(node)}: emitted as generated text in some turns and as prompt in others"
            + (f" ({len(site.atoms)} traced atoms, none separates them)" if site else ""),
            example,
        )

    def window(self, body: list[Node], i: int, stack: tuple[Block, ...]) -> Region | None:
        """A two-pass region starting at ``body[i]``, or None.

        ``body[i]`` writes prompt text in some paths and generated text in others, and no single
        condition tells them apart (Qwen3's assistant branches: the same cue, then reasoning that
        is prompt with thinking off, then content). It is followed by siblings whose generated
        text follows it: generated nodes, conditional nodes, other such blocks. The region is
        written twice: first with only its prompt parts, then inside one ``{% generation %}``
        block with only its generated parts (``rewrite.assemble``). That is the same text when
        the generated text of every path is a suffix of what the region writes, which the
        rewrite checks on the probes. The region ends at the last sibling that writes generated
        text; when that one is conditional and no sibling before it always writes generated text
        (Kimi-K2's role-generic content, then ``<|im_end|>``), its condition guards the block, so
        the block is not written empty. Offsets are not involved: ``i`` indexes ``body``.
        """
        roles: dict[int, str] = {}
        first = self.role(body[i], stack, False, roles)
        if first is None or not (first == "split" or first.startswith("if:")):
            return None
        roles[id(body[i])] = first
        end, always, guard = None, False, None
        for k in range(i + 1, len(body)):
            node = body[k]
            if is_split_marker(node, self.template.source) or _blocking(node):
                break
            role = self.role(node, stack, False, roles, True)
            if role is None or role == "out":
                break
            roles[id(node)] = role
            if role == "in" and isinstance(node, Block) and self._writes(node, any_=True):
                end = k  # generated text, though maybe not on every path
            elif role != "both" and not isinstance(node, (Block, Statement, Comment)) and self._writes(node):
                end, always = k, always or role == "in"
                guard = None if always else role[3:]
        nodes = body[i : end + 1] if end is not None else []
        kinds = {roles[id(n)] for n in nodes} - {"both"}
        if len(kinds) == 1 and first.startswith("if:"):
            # One condition for all: a plain conditional region, which a run of nodes gives
            # already unless a plain ``set`` inside a node stopped it; in a block it is local,
            # which the rewrite checks on the probes (Kimi-K2 sets a name in a tool-result branch).
            return Region(nodes, first[3:]) if any(map(_blocking, nodes)) else None
        return Region(nodes, guard, roles) if nodes else None

    def tail(self, run: list[Node], node: Node, stack: tuple[Block, ...]) -> Region | None:
        """A two-pass region written generated parts first: the generated ``run`` and then
        ``node``, a block that writes generated text and then prompt text (Apriel's ``{% if not
        loop.last %}`` writing ``\n<|end|>`` then ``\n``), or None.

        Written as ``{% generation %}`` + the run + ``node`` with its generated parts only +
        ``{% endgeneration %}`` + ``node`` with its prompt parts only (``rewrite.assemble``): the same
        text when, in every trace, ``node``'s generated text precedes its prompt text, and its
        tests read the same values twice. A plain ``set`` of the run whose name ``node`` reads is
        written in both copies (the generation block is a scope of its own); any other name the
        run sets must be read only inside it. The rewrite checks the result on the probes.
        """
        roles: dict[int, str] = {}
        if self.role(node, stack, False, roles, True) != "split" or not self._generated_before_prompt(node):
            return None
        run = self._trimmed(run, end=False)
        if not run:
            return None
        for n in run:
            names = _set_names(n) if _blocking(n) else set()
            if names is None:
                return None
            refs = [p for name in names for p in self.refs.get(name, ())]
            if not all(run[0].start <= p < node.end for p in refs):
                return None
            later = any(p >= node.start for p in refs)
            if later and not isinstance(n, Statement):
                return None
            roles[id(n)] = "both" if later else "in"
        roles[id(node)] = "split"
        return Region([*run, node], None, roles, generated_first=True)

    def _generated_before_prompt(self, node: Node) -> bool:
        """In every trace, ``node``'s generated emissions all end before its prompt ones start."""
        by_trace: dict[int, list[Labelled]] = {}
        for it in self.items([node]):
            by_trace.setdefault(it.emission.trace, []).append(it)
        for items in by_trace.values():
            ins = [it.emission.end for it in items if it.label == IN]
            outs = [it.emission.start for it in items if it.label == OUT and it.emission.end > it.emission.start]
            if ins and outs and max(ins) > min(outs):
                return False
        return True

    def _entered_empty(self, run: list[Node]) -> list[Block]:
        """The ``if`` blocks of ``run`` when the run's only writers are such blocks and each may
        write nothing (a branch not taken, no ``else``): a generation block around them would
        then render empty where none of their branches runs, and transformers masks a token
        outside every span for an empty span (:func:`tmplc.verification.empty_spans`). The
        blocks then go inside the branches instead: each ``if``'s own test guards them,
        evaluated once. Several such ``if`` blocks (DiffusionGemma's reasoning, then its tool
        calls) each get their own block only where every traced writing of each but the last
        ends with an ASCII character (``<channel|>``), where two blocks may meet without losing a
        token (one block per contiguous run otherwise: Gemma 4's content, then its stop). Empty
        otherwise."""
        writers = [n for n in run if not self._silent(n)]
        if not writers or not all(isinstance(n, Block) and n.name == "if" and not self._always_writes(n)
                                  for n in writers):
            return []
        if len(writers) > 1 and not all(self._ends_ascii(n) for n in writers[:-1]):
            return []
        return writers  # type: ignore[return-value]

    def _ends_ascii(self, node: Node) -> bool:
        """Every traced writing of ``node`` (a run of its emissions, one continuing where the other
        ends) ends with an ASCII character."""
        items = [it for it in self.items([node]) if it.emission.end > it.emission.start]
        starts = {(it.emission.trace, it.emission.start) for it in items}
        ends = [it for it in items if (it.emission.trace, it.emission.end) not in starts]
        return all(self.evidence.renders[it.emission.trace][it.emission.end - 1] < "\x80" for it in ends)

    def _silent(self, node: Node) -> bool:
        """``node`` never writes: a statement, a comment, a text run whitespace control always removes."""
        if isinstance(node, (Statement, Comment)):
            return True
        return isinstance(node, Text) and not node.text.strip() and not self._writes(node, any_=True)

    def _always_writes(self, node: Node) -> bool:
        """``node`` writes text every time it runs, as far as structure and the traced emissions
        tell: an output or text run whose every emission is non-empty, or an ``if`` with an
        ``else`` each of whose clauses holds such a node directly. A clause no probe reaches (a
        branch that raises, tool calls the probes cannot write) is not evidence either way and is
        left out. A ``for`` may run no iteration."""
        if isinstance(node, Block):
            if node.name != "if" or node.clauses[-1].tag.name != "else":
                return False
            return all(any(self._always_writes(n) for n in c.body) for c in node.clauses if self.items(c.body))
        if isinstance(node, (Statement, Comment)):
            return False
        return self._writes(node)

    def _writes(self, node: Node, any_: bool = False) -> bool:
        """Every traced emission of ``node`` is non-empty (``any_``: at least one is)."""
        items = self.items([node])
        written = [it.emission.end > it.emission.start for it in items]
        return any(written) if any_ else bool(items) and all(written)

    def role(self, node: Node, stack: tuple[Block, ...], in_for: bool, roles: dict[int, str],
             after_in: bool = False) -> str | None:
        """How ``node`` is written in a two-pass region (see :class:`Region`), or None when it cannot
        be written twice: a statement that leaves the loop, a side effect inside a loop that both
        passes run, a node that writes prompt and generated text with no condition between them.
        ``in_for``: inside a ``for`` that both passes run. ``after_in``: a sibling before ``node``
        writes generated text; a node no probe reaches then stays in the generated copy, else in
        the prompt copy (its order with its siblings is kept either way; its mask is unproved, as
        it is outside a two-pass region). Nested nodes' roles go into ``roles``."""
        if isinstance(node, Comment) or is_split_marker(node, self.template.source):
            return "both"
        if isinstance(node, Text) and not node.text.strip() and not self._writes(node, any_=True):
            return "both"  # indentation that whitespace control always removes
        if isinstance(node, Statement):
            if node.name in ("break", "continue", "import", "from", "extends", "include"):
                return None
            if _blocking(node):  # a plain variable: before the block, or in both copies of a loop
                return "both" if in_for else "out"
            return None if in_for else "in"
        items = self.items([node])
        if not items:
            if isinstance(node, Block) and _blocking(node):
                return "both" if in_for else "out"
            return "in" if after_in else "out"
        labels = {it.label for it in items}
        if STRADDLE in labels:
            return None
        if labels == {IN} or labels == {OUT}:
            if in_for and isinstance(node, Block) and _has_side_effects(node):
                return None
            return "in" if labels == {IN} else "out"
        cond = self.condition([node], stack)
        if isinstance(cond, str):
            return "if:" + cond
        if not (isinstance(node, Block) and node.name in ("if", "for")):
            return None
        inner, loop = stack + (node,), in_for or node.name == "for"
        for clause in node.clauses:
            after = False
            for child in clause.body:
                role = self.role(child, inner, loop, roles, after)
                if role is None:
                    return None
                roles[id(child)] = role
                after = after or role == "in" and bool(self.items([child])) or role == "split" or role.startswith("if:")
        return "split"


def _set_names(node: Node) -> set[str] | None:
    """Names assigned by the plain ``{% set x = ... %}`` statements in ``node`` (nested ones too);
    None when ``node`` blocks a generation block for another reason (:func:`_blocking`)."""
    if isinstance(node, Statement):
        if node.name != "set":
            return None if node.name in ("import", "from", "extends", "break", "continue", "include") else set()
        assigned = targets(node)
        if any(len(t) == 3 and t[1].text == "." for t in assigned):
            return set()
        return {t.text for target in assigned for t in target if t.kind == "NAME"}
    if isinstance(node, Block):
        if node.name in ("macro", "set", "block"):
            return None
        names: set[str] = set()
        for clause in node.clauses:
            for child in clause.body:
                inner = _set_names(child)
                if inner is None:
                    return None
                names |= inner
        return names
    return set()


def _references(template: Template) -> dict[str, list[int]]:
    """Source offsets of every name token (not an attribute after ``.``) in ``template``'s tags."""
    refs: dict[str, list[int]] = {}
    for node, _ in template.walk():
        if isinstance(node, Output):
            tag_lists = [node.toks]
        elif isinstance(node, Statement):
            tag_lists = [node.tag.toks]
        elif isinstance(node, Block):
            tag_lists = [c.tag.toks for c in node.clauses]
        else:
            continue
        for toks in tag_lists:
            sig = [t for t in toks if t.kind != "WS"]
            for k, t in enumerate(sig):
                if t.kind == "NAME" and not (k and sig[k - 1].text == "."):
                    refs.setdefault(t.text, []).append(t.start)
    return refs


def _has_side_effects(node: Block) -> bool:
    """A statement other than a plain ``set`` inside ``node`` (``set ns.x``, ``do``...)."""
    for clause in node.clauses:
        for child in clause.body:
            if isinstance(child, Statement) and not (child.name == "set" and _blocking(child)):
                return True
            if isinstance(child, Block) and _has_side_effects(child):
                return True
    return False
