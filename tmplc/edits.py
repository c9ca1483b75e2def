"""Text edits on the original template: insert tags without changing what renders.

Under ``trim_blocks``/``lstrip_blocks`` a tag changes the text next to it: ``{% x %}`` eats
the newline after it and the indentation before it, ``-`` strips all whitespace on its side.
A tag inserted between a text run and its neighbour must therefore take over the neighbour's
effect on that text run, and have no effect where the text run was not touched before:

* right of the insertion is text, left was ``-}}``/``-%}`` → the new tag ends ``-%}``;
  left was a plain block tag → ``%}`` (trim_blocks eats one newline, as before); left was a
  plain ``}}`` or the text continues (a split) → ``+%}`` (nothing trimmed);
* left of the insertion is text, right was ``{{-``/``{%-`` → the new tag starts ``{%-``;
  right was a plain block tag → ``{%`` (lstrip as before); right was ``{{`` or a split → ``{%+``.

Positions are character offsets into the template source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .syntax import Comment, Node, Output, Raw, Tag, Template, Text


def block_tag(body: str, lm: str = "", rm: str = "") -> str:
    """``{%`` + ``lm`` + `` body `` + ``rm`` + ``%}``: a block tag with whitespace-control modifiers
    (``-``, ``+`` or ``""`` on each side; see the module docstring for which one an insertion needs)."""
    return "{%" + lm + " " + body + " " + rm + "%}"


@dataclass(frozen=True)
class Insertion:
    """Tags to insert at ``pos``; ``bodies`` are tag bodies such as ``"generation"``."""

    pos: int
    bodies: tuple[str, ...]


def _leaves(template: Template) -> list[Node]:
    return list(template.leaves())


def _kind(leaf: Node) -> str:
    if isinstance(leaf, Text):
        return "data"
    if isinstance(leaf, Output):
        return "var"
    return "block"  # Tag, Comment, Raw: lstrip_blocks and trim_blocks apply


def _right_effect(leaf: Node | None) -> str:
    """Right modifier a new block tag needs to treat following text as ``leaf`` did."""
    if leaf is None:
        return "+"
    if _kind(leaf) == "var":
        return "-" if leaf.right_mod == "-" else "+"  # type: ignore[attr-defined]
    return leaf.right_mod  # type: ignore[attr-defined]


def _left_effect(leaf: Node | None) -> str:
    """Left modifier a new block tag needs to treat preceding text as ``leaf`` did."""
    if leaf is None:
        return "+"
    if _kind(leaf) == "var":
        return "-" if leaf.left_mod == "-" else "+"  # type: ignore[attr-defined]
    return leaf.left_mod  # type: ignore[attr-defined]


class Editor:
    """Compute whitespace-safe tag insertions for one parsed template."""

    def __init__(self, template: Template):
        self.template = template
        self.source = template.source
        self.leaves = _leaves(template)
        self._by_start = {leaf.start: i for i, leaf in enumerate(self.leaves)}
        self._by_end = {leaf.end: i for i, leaf in enumerate(self.leaves)}

    def normalize(self, pos: int) -> int:
        """Move an insertion at the very end of the template before its final newline, which
        Jinja drops only while it is the last character (``keep_trailing_newline=False``)."""
        if pos == len(self.source) and self.leaves and isinstance(self.leaves[-1], Text):
            if self.source.endswith("\r\n"):
                return pos - 2
            if self.source.endswith(("\n", "\r")):
                return pos - 1
        return pos

    def leaf_before(self, pos: int) -> Node | None:
        """The leaf that ends at source offset ``pos``, if one does."""
        k = self._by_end.get(pos)
        return self.leaves[k] if k is not None else None

    def leaf_after(self, pos: int) -> Node | None:
        """The leaf that starts at source offset ``pos``, if one does."""
        k = self._by_start.get(pos)
        return self.leaves[k] if k is not None else None

    def mods(self, pos: int) -> tuple[str, str]:
        """``(left, right)`` modifiers for a block tag inserted at ``pos``."""
        left_i = self._by_end.get(pos)
        right_i = self._by_start.get(pos)
        if left_i is None and right_i is None:
            # Inside a text run: a split; the text on both sides stays untouched.
            return "+", "+"
        left = self.leaves[left_i] if left_i is not None else None
        right = self.leaves[right_i] if right_i is not None else None
        if is_split_marker(left, self.source) or is_split_marker(right, self.source):
            return "+", "+"
        lm = _left_effect(right) if isinstance(left, Text) else ""
        rm = _right_effect(left) if isinstance(right, Text) else ""
        return lm, rm

    def render_tags(self, pos: int, bodies: tuple[str, ...] | list[str]) -> str:
        lm, rm = self.mods(pos)
        out = []
        for k, body in enumerate(bodies):
            a = lm if k == 0 else ""
            b = rm if k == len(bodies) - 1 else ""
            out.append(block_tag(body, a, b))
        return "".join(out)

    def apply(self, insertions: list[Insertion], replacements: tuple[tuple[int, int, str], ...] | list[tuple[int, int, str]] = ()) -> str:
        """Apply insertions (and plain replacements ``(start, end, text)``) to the source.

        Raises:
            ValueError: overlapping edits.
        """
        edits: list[tuple[int, int, str]] = list(replacements)
        for ins in insertions:
            pos = self.normalize(ins.pos)
            edits.append((pos, pos, self.render_tags(pos, ins.bodies)))
        edits.sort(key=lambda e: (e[0], e[1]))
        out, last = [], 0
        for start, end, text in edits:
            if start < last:
                raise ValueError(f"overlapping edits at offset {start}")
            out.append(self.source[last:start])
            out.append(text)
            last = end
        out.append(self.source[last:])
        return "".join(out)


def stand_in(node: Node, note: str) -> str:
    """A comment that takes the place of ``node`` (a tag, output, raw block or whole block,
    not a text run) with the same effect on the text on each side: ``{{-`` → ``{#-``, a plain
    ``{{ }}`` → ``{#+ … +#}`` (no trimming), a block tag keeps its modifiers (comments obey
    ``trim_blocks``/``lstrip_blocks`` like block tags). ``note`` is the comment's text."""
    leaves = list(node.leaves())
    return "{#" + _left_effect(leaves[0]) + " " + note + " " + _right_effect(leaves[-1]) + "#}"


SPLIT_MARK = '{{ "tmplc-split"[:0] }}'
JOIN_OPEN = "{#tmplc-join:"


def is_split_marker(leaf: Node | None, source: str) -> bool:
    """The placeholder that separates the two halves of a split text run during locating."""
    return isinstance(leaf, Output) and source[leaf.start : leaf.end] == SPLIT_MARK


def cleanup(text: str) -> str:
    """Remove locating placeholders: drop text-split marks, re-join split outputs that ended
    up with no tag between them, and drop the join notes of those that did."""
    text = text.replace(SPLIT_MARK, "")
    text = re.sub(r"(?: \+ '')? \}\}\{#tmplc-join:([^#]*)#\}\{\{(?: '' \+)? ", lambda m: m.group(1), text, flags=re.S)
    return re.sub(r"\{#tmplc-join:[^#]*#\}", "", text, flags=re.S)


def is_output_leaf(node: Node) -> bool:
    return isinstance(node, (Text, Output, Raw))


__all__ = ["Editor", "Insertion", "is_output_leaf", "stand_in", "Comment", "Tag"]
