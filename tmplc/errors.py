"""Errors raised by tmplc, each carrying a source position for a one-line report."""

from __future__ import annotations

import re
from typing import Literal

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with line breaks, control characters and lone surrogates (undecodable file-name
    bytes) escaped (``\\n``, ``\\x00``, ``\\u2028``, ``\\udcff``): a report is exactly one
    printable line."""

    def esc(m: re.Match) -> str:
        c = m.group()
        return _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")

    return _CONTROL_RE.sub(esc, text)


# What an input error is about, set where it is raised: lint maps it to a rule code (TMPL000 for
# "empty", "syntax" and "nesting", TMPL002 for "markers"), export reads "no-template"; nothing
# classifies an error by its message text.
Kind = Literal["input", "no-template", "empty", "syntax", "markers", "nesting"]


class TmplcError(Exception):
    """Base class for every error tmplc reports to a user."""


class InputError(TmplcError):
    """Bad input: unreadable file, non-UTF-8 bytes, malformed Jinja, unknown container.

    Args:
        message: what is wrong, one line.
        path: the file (or virtual path such as ``tokenizer_config.json#chat_template[tool_use]``).
        line, col: 1-based position of the problem (characters, not bytes); 0 when unknown.
        kind: what the error is about (:data:`Kind`): ``"syntax"`` (Jinja that does not parse or
            compile), ``"markers"`` (an unclosed, stray or misnested ``{% generation %}`` tag),
            ``"nesting"`` (:class:`NestingError`), ``"empty"`` (an empty template),
            ``"no-template"`` (a config without a ``chat_template``); ``"input"`` for every
            other bad input (unreadable file, encoding, JSON, container shape).

    ``str(err)`` is the one-line report ``path:line:col: message`` used by the CLI (exit code 2);
    control characters in the path or message are escaped (:func:`one_line`).
    """

    kind: Kind = "input"

    def __init__(self, message: str, path: str = "<string>", line: int = 1, col: int = 1, kind: Kind | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col
        if kind is not None:
            self.kind = kind

    def with_path(self, path: str) -> InputError:
        """The same error reported at ``path`` (keeps the subclass and the kind)."""
        return type(self)(self.message, path, self.line, self.col, self.kind)

    def __str__(self) -> str:
        return one_line(f"{self.path}:{self.line}:{self.col}: {self.message}")


class NestingError(InputError):
    """The template nests deeper than jinja2 (its parser, code generator or Python's compiler)
    can handle. ``augment`` reports it as ``Reason.TOO_DEEPLY_NESTED`` (exit 1); lint as TMPL000."""

    kind: Kind = "nesting"


class OutputError(TmplcError):
    """An output path that cannot be written (missing or unwritable directory, a directory in
    the way, two templates writing one file); ``str(err)`` is ``path:0:0: message``."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return one_line(f"{self.path}:0:0: {self.message}")


class NotProved(TmplcError):
    """A template tmplc cannot prove where a command needs a proved training template (``show``,
    ``export``): exit 1. ``str(err)`` is one line ``path:0:0: cannot prove: [reason] message``."""

    def __init__(self, label: str, reason: str | None, message: str):
        super().__init__(message)
        self.label, self.reason, self.message = label, reason, message

    def __str__(self) -> str:
        return one_line(f"{self.label}:0:0: cannot prove: [{self.reason}] {self.message}")
