"""Concrete syntax tree of a Jinja template.

The lark grammar (``jinja.lark``) tokenizes the template losslessly; this module groups the
tokens into leaves (text runs, ``{{ }}`` outputs, ``{% %}`` tags, comments, raw blocks) and
nests block tags (``if``/``for``/``macro``/...) into :class:`Block` nodes. Every character of
the source belongs to exactly one leaf, so ``Template.unparse()`` returns the source byte for
byte (CRLF, no trailing newline, ``-``/``+`` whitespace control, comments and ``{% raw %}``).

Positions are character offsets into the source ``str`` (code points, as Python slicing uses),
half-open ``[start, end)``; :class:`LineIndex` turns them into 1-based line and column.
jinja2 itself is not lossless (its lexer drops text stripped by ``-`` and its AST has line
numbers only), so positions always come from here; jinja2 says what the template *does*.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lark import Lark, Tree
from lark import Token as LarkToken
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import InputError

# Block tags with a body, their middle clauses and their end tag.
BLOCK_TAGS: dict[str, tuple[str, ...]] = {
    "if": ("elif", "else"),
    "for": ("else",),
    "macro": (),
    "call": (),
    "filter": (),
    "set": (),  # only the block form ``{% set x %}...{% endset %}``
    "with": (),
    "block": (),
    "autoescape": (),
    "generation": (),
}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark.open(
        str(Path(__file__).with_name("jinja.lark")),
        parser="lalr",
        lexer="contextual",
        keep_all_tokens=True,
        maybe_placeholders=False,
    )


class LineIndex:
    """Map character offsets of a source string to 1-based (line, column) pairs."""

    def __init__(self, source: str):
        self.starts = [0]
        for i, ch in enumerate(source):
            if ch == "\n":
                self.starts.append(i + 1)

    def position(self, offset: int) -> tuple[int, int]:
        """Return ``(line, col)``, both 1-based, of character ``offset``."""
        line = bisect.bisect_right(self.starts, offset) - 1
        return line + 1, offset - self.starts[line] + 1


@dataclass(eq=False)
class Token:
    """One lexical token inside a tag: ``kind`` is a grammar terminal (NAME, STRING, OP, WS, NUMBER)."""

    kind: str
    text: str
    start: int
    end: int


@dataclass(eq=False)
class Node:
    start: int
    end: int

    def leaves(self) -> Iterator[Node]:
        yield self


@dataclass(eq=False)
class Text(Node):
    """A run of template text (Jinja ``data``), emitted after whitespace control."""

    text: str = ""


@dataclass(eq=False)
class Comment(Node):
    """A ``{# ... #}`` comment; its ``-``/``+`` markers still control whitespace."""

    text: str = ""

    @property
    def left_mod(self) -> str:
        return self.text[2] if self.text[2:3] in ("-", "+") else ""

    @property
    def right_mod(self) -> str:
        return self.text[-3] if self.text[-3:-2] in ("-", "+") else ""


@dataclass(eq=False)
class Raw(Node):
    """A ``{% raw %}...{% endraw %}`` block: its body is emitted verbatim."""

    text: str = ""

    @property
    def left_mod(self) -> str:
        return self.text[2] if self.text[2:3] in ("-", "+") else ""

    @property
    def right_mod(self) -> str:
        return self.text[-3] if self.text[-3:-2] in ("-", "+") else ""


@dataclass(eq=False)
class _Delimited(Node):
    open: str = ""
    close: str = ""
    toks: list[Token] = field(default_factory=list)

    @property
    def left_mod(self) -> str:
        return self.open[2:3]

    @property
    def right_mod(self) -> str:
        return self.close[:1] if len(self.close) == 3 else ""

    @property
    def body_start(self) -> int:
        return self.start + len(self.open)

    @property
    def body_end(self) -> int:
        return self.end - len(self.close)

    def code(self, source: str) -> str:
        """The text between the delimiters, whitespace included."""
        return source[self.body_start : self.body_end]

    def sig(self) -> list[Token]:
        """Tokens without whitespace."""
        return [t for t in self.toks if t.kind != "WS"]


@dataclass(eq=False)
class Output(_Delimited):
    """A ``{{ expression }}`` node."""


@dataclass(eq=False)
class Tag(_Delimited):
    """A single ``{% name ... %}`` tag."""

    name: str = ""


@dataclass(eq=False)
class Statement(Node):
    """A tag without a body: ``{% set x = 1 %}``, ``{% break %}``, ``{% do ... %}``..."""

    tag: Tag = None  # type: ignore[assignment]

    @property
    def name(self) -> str:
        return self.tag.name

    def leaves(self) -> Iterator[Node]:
        yield self.tag


@dataclass(eq=False)
class Clause:
    """A block tag (opener, ``elif`` or ``else``) and the nodes up to the next clause."""

    tag: Tag
    body: list[Node]


@dataclass(eq=False)
class Block(Node):
    """A block statement: ``clauses[0].tag`` opens it, ``end`` closes it."""

    clauses: list[Clause] = field(default_factory=list)
    end_tag: Tag = None  # type: ignore[assignment]

    @property
    def name(self) -> str:
        return self.clauses[0].tag.name

    def leaves(self) -> Iterator[Node]:
        for clause in self.clauses:
            yield clause.tag
            for node in clause.body:
                yield from node.leaves()
        yield self.end_tag


@dataclass(eq=False)
class Template:
    """A parsed template: ``body`` is the top-level node list; ``unparse()`` returns ``source``."""

    source: str
    body: list[Node]

    def leaves(self) -> Iterator[Node]:
        for node in self.body:
            yield from node.leaves()

    def unparse(self) -> str:
        return "".join(self.source[leaf.start : leaf.end] for leaf in self.leaves())

    def walk(self) -> Iterator[tuple[Node, tuple[Block, ...]]]:
        """Yield every node (depth first, source order) with the tuple of its enclosing blocks."""

        def rec(nodes: list[Node], stack: tuple[Block, ...]):
            for node in nodes:
                yield node, stack
                if isinstance(node, Block):
                    for clause in node.clauses:
                        yield from rec(clause.body, stack + (node,))

        yield from rec(self.body, ())

    def where(self, node: Node) -> str:
        """``line:col 'snippet'`` of ``node`` for messages (1-based; snippet ≤ 60 characters)."""
        line, col = LineIndex(self.source).position(node.start)
        return f"{line}:{col} {self.source[node.start : node.end][:60]!r}"


def targets(node: Node) -> list[list[Token]]:
    """The assignment targets of a ``set`` statement or block or a ``for`` block, one token list
    per target (``{% set a, b = … %}`` → ``[[a], [b]]``, ``{% set ns.x = … %}`` → ``[[ns, ., x]]``,
    ``{% for k, v in … %}`` → ``[[k], [v]]``); ``[]`` for any other node."""
    tag = node.tag if isinstance(node, Statement) else node.clauses[0].tag if isinstance(node, Block) else None
    if tag is None or tag.name not in ("set", "for"):
        return []
    sig = tag.sig()[1:]
    stop = "=" if tag.name == "set" else "in"
    head = sig[: next((k for k, t in enumerate(sig) if t.text == stop), len(sig))]
    out: list[list[Token]] = [[]]
    for t in head:
        if t.text == ",":
            out.append([])
        elif t.text not in ("(", ")"):
            out[-1].append(t)
    return [t for t in out if t]


def _is_block_set(toks: list[Token]) -> bool:
    depth = 0
    for t in toks:
        if t.kind == "OP":
            if t.text in "([{":
                depth += 1
            elif t.text in ")]}":
                depth -= 1
            elif t.text == "=" and depth == 0:
                return False
    return True


def _error(source: str, offset: int, message: str, path: str, markers: bool = False) -> InputError:
    """An :class:`InputError` at ``offset``: kind ``"markers"`` when the tags at fault include a
    ``{% generation %}`` or ``{% endgeneration %}`` tag, else ``"syntax"``."""
    line, col = LineIndex(source).position(offset)
    return InputError(message, path, line, col, "markers" if markers else "syntax")


def _is_marker(name: str) -> bool:
    return name in ("generation", "endgeneration")


def _unclosed(source: str, block: Block, at: Tag, path: str) -> InputError:
    line, col = LineIndex(source).position(at.start)
    return _error(source, block.start, f"unclosed '{block.name}' block (no 'end{block.name}' before "
                  f"'{at.name}' at {line}:{col})", path, _is_marker(block.name) or _is_marker(at.name))


def _at(tok: LarkToken) -> tuple[int, int]:
    """``(start, end)`` of a lark token (always set: the lexer tracks positions)."""
    assert tok.start_pos is not None and tok.end_pos is not None
    return tok.start_pos, tok.end_pos


def _leaf_from_tree(item, source: str, path: str) -> Node:
    if isinstance(item, LarkToken):
        cls = {"DATA": Text, "COMMENT": Comment, "RAW": Raw}[item.type]
        return cls(*_at(item), str(item))
    assert isinstance(item, Tree)
    toks = [c for c in item.children if isinstance(c, LarkToken)]
    open_tok, close_tok, inner = toks[0], toks[-1], toks[1:-1]
    inner_toks = [Token(t.type, str(t), *_at(t)) for t in inner]
    start, end = _at(open_tok)[0], _at(close_tok)[1]
    if item.data == "output":
        return Output(start, end, str(open_tok), str(close_tok), inner_toks)
    sig = [t for t in inner_toks if t.kind != "WS"]
    if not sig or sig[0].kind != "NAME":
        raise _error(source, start, "tag without a name", path)
    return Tag(start, end, str(open_tok), str(close_tok), inner_toks, sig[0].text)


def parse(source: str, path: str = "<string>") -> Template:
    """Parse a Jinja template into a lossless :class:`Template`.

    Args:
        source: the template text (``str``; CRLF and a missing final newline are kept).
        path: used in error messages only.

    Returns:
        A :class:`Template` whose ``unparse()`` equals ``source``.

    Raises:
        InputError: malformed Jinja (unterminated tag or string, unclosed or stray block tag),
            with the 1-based line and column of the offending token.
    """
    if source == "":
        raise InputError("empty template", path, 1, 1, "empty")
    try:
        tree = _parser().parse(source)
    except UnexpectedInput as exc:
        raise _lark_error(source, exc, path) from None
    return Template(source, _nest(source, [_leaf_from_tree(item, source, path) for item in tree.children], path))


def _lark_error(source: str, exc: UnexpectedInput, path: str) -> InputError:
    """One-line error at the offending token, or at the tag left open at the end."""
    offset = getattr(exc, "pos_in_stream", None)
    if isinstance(exc, UnexpectedToken):
        offset = exc.token.start_pos if exc.token.type != "$END" else len(source)
        what = "unexpected end of template (unterminated tag)" if exc.token.type == "$END" else (
            f"unexpected {exc.token!s:.20}"
        )
    elif isinstance(exc, UnexpectedEOF):
        offset, what = len(source), "unexpected end of template (unterminated tag)"
    elif isinstance(exc, UnexpectedCharacters):
        what = f"unexpected character {source[exc.pos_in_stream or 0]!r}"
    else:  # pragma: no cover - lark has no other kinds
        what = "syntax error"
    if offset is None or offset >= len(source):
        # Point at the last opening delimiter: that is the tag left open.
        starts = [source.rfind(d) for d in ("{{", "{%", "{#")]
        offset = max(starts) if max(starts) >= 0 else max(len(source) - 1, 0)
        what = "unterminated tag (no closing delimiter before the end of the template)"
    return _error(source, offset, what, path)


def _nest(source: str, leaves: list[Node], path: str) -> list[Node]:
    """Nest block tags (``if``/``for``/...) around their clauses' bodies; the top-level nodes.

    Raises:
        InputError: an unclosed block, a stray end tag, or ``elif``/``else`` outside a block.
    """
    root: list[Node] = []
    stack: list[tuple[Block, list[Node]]] = []  # open blocks with the body being filled
    current = root
    for leaf in leaves:
        if not isinstance(leaf, Tag):
            current.append(leaf)
            continue
        name = leaf.name
        if name in BLOCK_TAGS and not (name == "set" and not _is_block_set(leaf.sig()[1:])):
            block = Block(leaf.start, leaf.end, clauses=[Clause(leaf, [])])
            current.append(block)
            stack.append((block, current))
            current = block.clauses[0].body
        elif name.startswith("end") and name[3:] in BLOCK_TAGS:
            if stack and stack[-1][0].name != name[3:] and any(b.name == name[3:] for b, _ in stack):
                raise _unclosed(source, stack[-1][0], leaf, path)
            if not stack or stack[-1][0].name != name[3:]:
                expected = f"'end{stack[-1][0].name}'" if stack else "no open block"
                raise _error(source, leaf.start, f"unexpected '{name}' (expected {expected})", path,
                             _is_marker(name) or bool(stack) and _is_marker(stack[-1][0].name))
            block, parent = stack.pop()
            block.end_tag = leaf
            block.end = leaf.end
            current = parent
        elif stack and name in BLOCK_TAGS[stack[-1][0].name]:
            block = stack[-1][0]
            block.clauses.append(Clause(leaf, []))
            current = block.clauses[-1].body
        elif name in ("elif", "else"):
            if any(name in BLOCK_TAGS[b.name] for b, _ in stack):
                raise _unclosed(source, stack[-1][0], leaf, path)
            raise _error(source, leaf.start, f"'{name}' outside of a matching block", path)
        else:
            current.append(Statement(leaf.start, leaf.end, leaf))
    if stack:
        block = stack[-1][0]
        raise _error(source, block.start, f"unclosed '{block.name}' block (no 'end{block.name}')", path,
                     _is_marker(block.name))
    return root
