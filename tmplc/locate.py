"""Locate the assistant-turn body and plan where the markers go.

Trace, don't guess: probe conversations are rendered through an instrumented copy of the
template (:mod:`tmplc.trace`); each emission of each output node is labelled *in* (inside the
oracle's mask), *out*, or *straddling* (the node writes both prompt and generated text, e.g.
Qwen2.5's ``'\\n' + message.content`` or Phi-3's ``'<|assistant|>\\n' + content + '<|end|>\\n'``).
Straddling nodes are split (concatenations at ``+``/``~``, string literals and text runs at the
mask boundary) and the template is traced again. Then runs of sibling nodes become regions:
plain ``{% generation %}`` regions where every emission is in, or conditional regions
``{% if COND %}{% generation %}…{% endgeneration %}{% else %}…{% endif %}`` where a condition
built from traced atoms (``message.role == "assistant"``, ``loop.first``, ``message.content``…)
separates in from out — the assistant-only branch for role-generic turns.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .conversations import Case
from .edits import JOIN_OPEN, SPLIT_MARK, Editor, is_split_marker
from .syntax import Block, Node, Output, Statement, Template, Text
from .trace import Atom, Emission, Instrumented, Site


class Unsupported(Exception):
    """The template cannot be augmented. ``code`` is a reason code from :data:`REASONS`."""

    def __init__(self, code: str, message: str, case: Case | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.case = case


REASONS = {
    "stop-token-in-next-message": "the turn has no end-of-turn text; its stop token is written by the next message",
    "never-renders-assistant": "no probe conversation renders an assistant message",
    "raises-on-every-probe": "the template raises on every probe conversation",
    "history-rerendered": "the template renders a turn differently once later messages exist, so no marker placement matches what the model generates",
    "untraceable-turn": "a turn's fields cannot be found in the rendering",
    "unsplittable-output": "one output value holds both prompt and generated text and cannot be split",
    "no-condition": "a node is generated text in some turns and prompt in others, and no traced condition separates them",
    "marker-scope": "the generated text is written from inside a macro or a {% set %} block, where markers are not seen",
    "proof-failed": "the proof found a conversation the training template masks wrongly",
    "trace-mismatch": "the instrumented template does not render like the original",
}

IN, OUT, STRADDLE = "in", "out", "straddle"
LOOP_ATOMS = ("first", "last", "prev_assistant")


@dataclass
class Labelled:
    emission: Emission
    label: str
    cuts: tuple[int, ...] = ()  # offsets inside the emission where the mask starts/stops


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


@dataclass
class Evidence:
    labels: dict[int, list[Labelled]] = field(default_factory=dict)
    renders: dict[int, str] = field(default_factory=dict)  # rendering key → plain text, see emitted()
    cases: dict[int, Case] = field(default_factory=dict)  # rendering key → the probe conversation

    def emitted(self, item: Labelled) -> str:
        return self.renders[item.emission.trace][item.emission.start : item.emission.end]

    def add(self, site: int, item: Labelled):
        self.labels.setdefault(site, []).append(item)


def label_trace(emissions: list[Emission], mask: set[int]) -> list[Labelled]:
    out = []
    for e in emissions:
        inside = [c in mask for c in range(e.start, e.end)]
        if all(inside):
            out.append(Labelled(e, IN))
        elif not any(inside):
            out.append(Labelled(e, OUT))
        else:
            cuts = tuple(k for k in range(1, len(inside)) if inside[k] != inside[k - 1])
            out.append(Labelled(e, STRADDLE, cuts))
    return out


# ----------------------------------------------------------------------------- conditions

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


# ----------------------------------------------------------------------------- planning

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
                raise Unsupported("unsplittable-output", f"{self._where(node)}: one output writes both prompt and generated text",
                                  example)
            raise Unsupported(
                "no-condition",
                f"{self._where(node)}: emitted as generated text in some turns and as prompt in others"
                + (f" ({len(site.atoms)} traced atoms, none separates them)" if site else ""),
                example,
            )
        close()

    def _where(self, node: Node) -> str:
        from .syntax import LineIndex

        line, col = LineIndex(self.template.source).position(node.start)
        snippet = self.template.source[node.start : node.end].replace("\n", "\\n")[:60]
        return f"{line}:{col} {snippet!r}"


# ----------------------------------------------------------------------------- splitting

_LOW = {"if", "else", "and", "or", "not", "in", "is"}
_LOWOPS = {"==", "!=", "<", ">", "<=", ">=", "-", "*", "/", "//", "%", "**", ","}


def concat_terms(node: Output) -> list[tuple[int, int]] | None:
    """Source spans of the terms of a top-level ``a + b ~ c`` concatenation, or None."""
    sig = node.sig()
    depth = 0
    cuts: list[int] = []
    for k, t in enumerate(sig):
        if t.kind == "OP" and t.text in "([{":
            depth += 1
        elif t.kind == "OP" and t.text in ")]}":
            depth -= 1
        elif depth == 0:
            if (t.kind == "NAME" and t.text in _LOW) or (t.kind == "OP" and t.text in _LOWOPS):
                return None
            if t.kind == "OP" and t.text in ("+", "~"):
                if k == 0 or k == len(sig) - 1:
                    return None
                cuts.append(k)
    if not cuts:
        return None
    spans = []
    prev = 0
    for k in cuts + [len(sig)]:
        part = sig[prev:k]
        if not part:
            return None
        spans.append((part[0].start, part[-1].end))
        prev = k + 1
    return spans


def _unescape(raw_inner: str) -> str:
    text = raw_inner.replace("\r\n", "\n").replace("\r", "\n")
    return text.encode("ascii", "backslashreplace").decode("unicode-escape")


def split_literal(literal: str, offset: int) -> tuple[str, str] | None:
    """Split a Jinja string literal so the first part's value has ``offset`` characters."""
    q, inner = literal[0], literal[1:-1]
    full = _unescape(inner)
    for p in range(len(inner) + 1):
        try:
            a, b = _unescape(inner[:p]), _unescape(inner[p:])
        except UnicodeDecodeError:
            continue
        if len(a) == offset and a + b == full:
            return q + inner[:p] + q, q + inner[p:] + q
    return None


def split_edits(template: Template, inst: Instrumented, evidence: Evidence) -> list[tuple[int, int, str]]:
    """Replacements that split every straddling node, or [] when none straddles."""
    source = template.source
    edits: list[tuple[int, int, str]] = []
    for site in inst.sites:
        items = evidence.labels.get(site.id, [])
        straddles = [it for it in items if it.label == STRADDLE]
        if not straddles:
            continue
        node = site.node
        if isinstance(node, Output):
            terms = concat_terms(node)
            if terms:
                literal = {(t.start, t.end) for t in node.sig() if t.kind == "STRING"}
                for (a_start, a_end), (b_start, b_end) in zip(terms, terms[1:]):
                    sep = source[a_end:b_start]
                    # `a + b` raises TypeError unless both are strings; keep that in each half
                    # (`'' + None` raises the same message as `'\n' + None`).
                    plus = sep.strip() == "+"
                    left = " + ''" if plus and (a_start, a_end) not in literal else ""
                    right = " '' +" if plus and (b_start, b_end) not in literal else ""
                    edits.append((a_end, b_start, left + " }}" + JOIN_OPEN + sep + "#}{{" + right + " "))
                continue
            sig = node.sig()
            if len(sig) == 1 and sig[0].kind == "STRING":
                cuts = sorted({c for it in straddles for c in it.cuts})
                lit = sig[0].text
                pieces, consumed = [], 0
                rest = lit
                for c in cuts:
                    parts = split_literal(rest, c - consumed)
                    if parts is None:
                        raise Unsupported("unsplittable-output", f"cannot split string literal {lit!r}")
                    pieces.append(parts[0])
                    rest, consumed = parts[1], c
                pieces.append(rest)
                edits.append((sig[0].start, sig[0].end, " }}{{ ".join(pieces)))
                continue
            edit = runtime_split(node, source, straddles, evidence.emitted)
            if edit is None:
                raise Unsupported(
                    "unsplittable-output",
                    f"{Planner(template, inst, evidence)._where(node)}: one value writes both the prompt cue and "
                    "generated text, and no fixed text marks the boundary",
                    evidence.cases.get(straddles[0].emission.trace),
                )
            edits.append(edit)
            continue
        if isinstance(node, Text):
            emitted = evidence.emitted(straddles[0])  # a text run emits the same text every time
            raw = source[node.start : node.end]
            # normalized index → raw index
            norm_to_raw, norm = [], []
            i = 0
            while i < len(raw):
                norm_to_raw.append(i)
                if raw[i] == "\r":
                    norm.append("\n")
                    i += 2 if raw[i : i + 2] == "\r\n" else 1
                else:
                    norm.append(raw[i])
                    i += 1
            norm_to_raw.append(len(raw))
            ns = "".join(norm)
            h = next(
                (h for h in range(len(ns) - len(emitted) + 1)
                 if ns[h : h + len(emitted)] == emitted and not ns[:h].strip() and not ns[h + len(emitted):].strip()),
                None,
            ) if emitted else None
            if h is None:
                raise Unsupported("unsplittable-output", f"cannot place a split in text at offset {node.start}")
            for c in sorted({c for it in straddles for c in it.cuts}):
                pos = node.start + norm_to_raw[h + c]
                edits.append((pos, pos, SPLIT_MARK))
            continue
        raise Unsupported("unsplittable-output", f"output at offset {node.start} writes both prompt and generated text")
    return edits


def _common_suffix(texts: list[str]) -> str:
    first = texts[0]
    n = 0
    while n < len(first) and all(len(t) > n and t[-1 - n] == first[-1 - n] for t in texts):
        n += 1
    return first[len(first) - n :]


def _common_prefix(texts: list[str]) -> str:
    first = texts[0]
    n = 0
    while n < len(first) and all(len(t) > n and t[n] == first[n] for t in texts):
        n += 1
    return first[:n]


def runtime_split(node: Output, source: str, straddles: list[Labelled], emitted) -> tuple[int, int, str] | None:
    """Split ``{{ X }}`` into ``{{ X[:K] }}{{ X[K:] }}`` where ``K`` is found at run time from a
    fixed anchor text (Llama 3's ``content`` variable = header + message + ``<|eot_id|>``).

    ``X[:K] ~ X[K:] == X`` for every string and every ``K``, so rendering never changes; the anchor
    only decides where the boundary falls. The first cut of every straddling emission must be
    the end of the first occurrence of a common suffix of the prompt parts (cue → body), or the
    start of the last occurrence of a common prefix of the tails (body → next cue).
    """
    import json

    texts = [emitted(it) for it in straddles]
    firsts = [it.cuts[0] for it in straddles]
    code = node.code(source).strip()
    x = f"({code})"
    for direction in ("cue", "tail"):
        if direction == "cue":
            anchor = _common_suffix([t[:c] for t, c in zip(texts, firsts)])
            ok = anchor and all(t.find(anchor) + len(anchor) == c for t, c in zip(texts, firsts))
            k = f"{x}.find({json.dumps(anchor, ensure_ascii=False)}) + {len(anchor)}"
        else:
            anchor = _common_prefix([t[c:] for t, c in zip(texts, firsts)])
            ok = anchor and all(t.rfind(anchor) == c for t, c in zip(texts, firsts))
            k = f"{x}.rfind({json.dumps(anchor, ensure_ascii=False)})"
        if ok:
            replacement = f"{node.open} {x}[:{k}] }}}}{{{{ {x}[{k}:] {node.close}"
            return node.start, node.end, replacement
    return None


# ----------------------------------------------------------------------------- assembly

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
