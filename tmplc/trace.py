"""Trace which template node produced each character of a rendering.

An instrumented copy of the template gets a ``{% tmplc_mark id, 0, k, atoms... %}`` before and a
``{% tmplc_mark id, 1 %}`` after every output node the generation tracker can see (text runs,
``{{ }}`` outputs, raw blocks and opaque ``call``/``filter`` blocks that are not inside a macro
or a ``{% set %}`` block); the tags are inserted with :class:`tmplc.edits.Editor`, so the
instrumented copy renders the original text plus markers. Rendering it and reading the markers
gives, for every emission of a node, its character span in the plain rendering and the values
of a few *atoms* (``message.role == "assistant"``, ``loop.first``...) at that point, from
which :mod:`tmplc.locate` derives conditions. Idea from sqlfluff's ``JinjaTracer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .conversations import Case, PerCase
from .edits import Editor, Insertion
from .render import TRACE_CLOSE, TRACE_OPEN, compile_template
from .syntax import Block, Node, Output, Raw, Statement, Template, Text

INLINE_BLOCKS = {"if", "for", "with", "generation"}
OPAQUE_BLOCKS = {"call", "filter"}
OPAQUE_STATEMENTS = {"include"}


@dataclass(frozen=True)
class Atom:
    """A boolean the tracer evaluates where a node is emitted. ``scope`` is the start offset of
    the ``for`` block whose variable it reads (``-1``: template kwargs), ``text`` is Jinja."""

    scope: int
    kind: str
    text: str


@dataclass
class Site:
    """An output node the tracer marks."""

    id: int
    node: Node
    loops: tuple[Block, ...]  # enclosing for blocks, outermost first
    stack: tuple[Block, ...]  # all enclosing blocks
    atoms: tuple[Atom, ...]


@dataclass
class Emission:
    site: int
    start: int
    end: int
    atoms: dict[Atom, bool]
    trace: int = 0  # which rendering (see Evidence.renders)


@dataclass
class Trace:
    text: str
    emissions: list[Emission]


class TraceError(Exception):
    pass


def loop_var(block: Block) -> str | None:
    """The single loop variable of a ``for`` block, or None (tuple targets, recursive loops)."""
    sig = block.clauses[0].tag.sig()
    names = [t.text for t in sig]
    if len(names) < 4 or names[2] != "in" or sig[1].kind != "NAME" or "recursive" in names:
        return None
    return names[1]


def _recursive(block: Block) -> bool:
    return block.name == "for" and any(t.text == "recursive" for t in block.clauses[0].tag.sig())


def _atoms(loops: tuple[Block, ...], kwargs_atoms: tuple[str, ...]) -> tuple[Atom, ...]:
    atoms: list[Atom] = []
    for block in loops:
        var = loop_var(block)
        if var is None:
            continue
        atoms += [
            Atom(block.start, "role", f'{var}.role == "assistant"'),
            Atom(block.start, "content", f"{var}.content"),
            Atom(block.start, "tool_calls", f"{var}.tool_calls"),
            Atom(block.start, "reasoning", f"{var}.reasoning_content"),
            # The final message, readable inside an inner loop that shadows ``loop.last``.
            Atom(block.start, "final", f"messages and {var} is sameas messages[-1]"),
        ]
    if loops:
        inner = loops[-1].start
        atoms += [
            Atom(inner, "first", "loop.first"),
            Atom(inner, "last", "loop.last"),
            Atom(inner, "prev_assistant", 'loop.previtem is defined and loop.previtem.role == "assistant"'),
            Atom(inner, "prev_tool", 'loop.previtem is defined and loop.previtem.role == "tool"'),
        ]
    atoms.append(Atom(-1, "last_assistant", 'messages and messages[-1].role == "assistant"'))
    for name in kwargs_atoms:
        atoms.append(Atom(-1, f"{name}_on", f"{name} is defined and {name}"))
        atoms.append(Atom(-1, f"{name}_off", f"{name} is defined and {name} is false"))
    return tuple(atoms)


def sites(template: Template, kwargs_atoms: tuple[str, ...] = ()) -> list[Site]:
    """The output nodes the tracker can see, in source order.

    Args:
        template: the parsed template.
        kwargs_atoms: template kwargs that switch reasoning (``enable_thinking``), traced as atoms.
    """
    out: list[Site] = []

    def visible(stack: tuple[Block, ...]) -> bool:
        return all(b.name in INLINE_BLOCKS and not _recursive(b) for b in stack)

    for node, stack in template.walk():
        if not visible(stack):
            continue
        opaque = (isinstance(node, Block) and node.name in OPAQUE_BLOCKS) or (
            isinstance(node, Statement) and node.name in OPAQUE_STATEMENTS
        )
        if isinstance(node, (Text, Output, Raw)) or opaque:
            loops = tuple(b for b in stack if b.name == "for")
            out.append(Site(len(out), node, loops, stack, _atoms(loops, kwargs_atoms)))
    return out


@dataclass
class Instrumented:
    template: Template
    sites: list[Site]
    source: str
    virtual_start: int | None  # site id whose start mark is implicit (text at offset 0)
    compiled: object = field(default=None, repr=False)
    _raw: PerCase[str] = field(default_factory=PerCase, repr=False, compare=False)

    def rendering(self, case: Case) -> str:
        """The raw rendering of ``case`` by the instrumented copy (text and trace marks, for
        :func:`read_trace`), rendered once per case object: the counterexample rounds of one
        augment locate the same probes again."""
        return self._raw.get(case, lambda c: c.render(self.compiled)[0])


def instrument(template: Template, kwargs_atoms: tuple[str, ...] = ()) -> Instrumented:
    """Build the instrumented copy of ``template`` (see module docstring).

    Args:
        template: the parsed template.
        kwargs_atoms: reasoning switches to trace as atoms (see :func:`sites`).

    Raises:
        jinja2.TemplateSyntaxError: the instrumented copy does not compile (a bug in the editor).
    """
    editor = Editor(template)
    ss = sites(template, kwargs_atoms)
    at: dict[int, tuple[list[str], list[Site]]] = {}
    virtual = None
    for s in ss:
        if s.node.start == 0 and isinstance(s.node, Text):
            virtual = s.id
        else:
            at.setdefault(s.node.start, ([], []))[1].append(s)
        at.setdefault(s.node.end, ([], []))[0].append(f"tmplc_mark {s.id}, 1")
    sets: dict[tuple[str, ...], int] = {}  # in source order, as the parser meets them
    insertions = [Insertion(pos, tuple(ends + [_opening(s, sets) for s in starts])) for pos, (ends, starts) in sorted(at.items())]
    source = editor.apply(insertions)
    inst = Instrumented(template, ss, source, virtual)
    inst.compiled = compile_template(source, trace=True)
    return inst


def _opening(site: Site, sets: dict[tuple[str, ...], int]) -> str:
    """The opening mark of ``site``: the number of its atom set, followed by the atoms where that
    set first occurs (:class:`tmplc.render.TraceExtension`); ``sets`` numbers the sets so far."""
    texts = tuple(a.text for a in site.atoms)
    if texts in sets:
        return f"tmplc_mark {site.id}, 0, {sets[texts]}"
    sets[texts] = len(sets)
    return f"tmplc_mark {site.id}, 0, {sets[texts]}" + "".join(f", (1 if ({t}) else 0)" for t in texts)


def read_trace(inst: Instrumented, raw: str) -> Trace:
    """Split a rendering of the instrumented template into plain text and emissions."""
    plain: list[str] = []
    n = 0
    emissions: list[Emission] = []
    open_: list[tuple[int, int, dict]] = []
    if inst.virtual_start is not None:
        open_.append((inst.virtual_start, 0, {}))
    i = 0
    while True:
        j = raw.find(TRACE_OPEN, i)
        chunk = raw[i:] if j < 0 else raw[i:j]
        if chunk:
            if not open_:
                raise TraceError(f"output {chunk[:30]!r} outside any traced node")
            plain.append(chunk)
            n += len(chunk)
        if j < 0:
            break
        k = raw.find(TRACE_CLOSE, j)
        if k < 0:
            raise TraceError("a trace mark is not closed")
        fields = raw[j + 1 : k].split(",")
        sid, kind = int(fields[0]), fields[1]
        if kind == "0":
            site = inst.sites[sid]
            atoms = {a: v == "1" for a, v in zip(site.atoms, fields[2:])}
            open_.append((sid, n, atoms))
        else:
            if not open_ or open_[-1][0] != sid:
                raise TraceError(f"unbalanced trace marks at node {sid}")
            _, start, atoms = open_.pop()
            if n > start:
                emissions.append(Emission(sid, start, n, atoms))
        i = k + 1
    if open_:
        raise TraceError("unclosed trace marks")
    return Trace("".join(plain), emissions)
