"""Lossless concrete syntax tree of Jinja chat templates (lark grammar + block nesting)."""

from .cst import (
    Block,
    Clause,
    Comment,
    LineIndex,
    Node,
    Output,
    Raw,
    Statement,
    Tag,
    Template,
    Text,
    Token,
    parse,
    targets,
)

__all__ = [
    "Block",
    "Clause",
    "Comment",
    "LineIndex",
    "Node",
    "Output",
    "Raw",
    "Statement",
    "Tag",
    "Template",
    "Text",
    "Token",
    "parse",
    "targets",
]
