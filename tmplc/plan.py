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

from .edits import is_split_marker
from .locate import IN, OUT, STRADDLE, Evidence, Labelled
from .reasons import CannotAugment, Reason
from .syntax import Block, Node, Statement, Template
from .trace import Atom, Instrumented, Site

LOOP_ATOMS = ("first", "last", "prev_assistant")


@dataclass
class Region:
    nodes: list[Node]
    condition: str | None  # None: always

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
    for formula in _formulas(common):
        if all(_holds(formula, it.emission.atoms) == (it.label == IN) for it in items):
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
    def __init__(self, template: Template, inst: Instrumented, evidence: Evidence):
        self.template = template
        self.inst = inst
        self.evidence = evidence
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
        regions: list[Region] = []
        self._plan(self.template.body, (), regions)
        return regions

    def _plan(self, body: list[Node], stack: tuple[Block, ...], regions: list[Region]) -> None:
        run: list[Node] = []
        cond: str | None | bool = False

        def close():
            nonlocal run, cond
            while run and not self.items([run[-1]]):
                run.pop()
            while run and not self.items([run[0]]):
                run.pop(0)
            if run and cond is not False:
                regions.append(Region(list(run), cond))  # type: ignore[arg-type]
            run, cond = [], False

        for node in body:
            items = self.items([node])
            if is_split_marker(node, self.template.source):
                close()
                continue
            if not items:
                if _blocking(node):
                    close()
                elif run:
                    run.append(node)
                continue
            has_in = any(it.label == IN for it in items)
            if not has_in and not any(it.label == STRADDLE for it in items):
                close()
                continue
            if not _blocking(node):
                c = self.condition([n for n in run if self.items([n])] + [node], stack)
                if c is not False and run:
                    run.append(node)
                    cond = c
                    continue
                close()
                c = self.condition([node], stack)
                if c is not False:
                    run, cond = [node], c
                    continue
            else:
                close()
            if isinstance(node, Block):
                for clause in node.clauses:
                    self._plan(clause.body, stack + (node,), regions)
                continue
            site = self.site_of.get(id(node))
            example = self.evidence.cases.get(next((it.emission.trace for it in items if it.label != OUT), -1))
            if any(it.label == STRADDLE for it in items):
                raise CannotAugment(Reason.UNSPLITTABLE_OUTPUT, f"{self.template.where(node)}: one output writes both prompt and generated text",
                                  example)
            raise CannotAugment(
                Reason.NO_CONDITION,
                f"{self.template.where(node)}: emitted as generated text in some turns and as prompt in others"
                + (f" ({len(site.atoms)} traced atoms, none separates them)" if site else ""),
                example,
            )
        close()
