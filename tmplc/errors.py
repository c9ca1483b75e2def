"""Errors raised by tmplc, each carrying a source position for a one-line report."""

from __future__ import annotations


class TmplcError(Exception):
    """Base class for every error tmplc reports to a user."""


class InputError(TmplcError):
    """Bad input: unreadable file, non-UTF-8 bytes, malformed Jinja, unknown container.

    Args:
        message: what is wrong, one line.
        path: the file (or virtual path such as ``tokenizer_config.json#chat_template[tool_use]``).
        line, col: 1-based position of the problem (characters, not bytes); 0 when unknown.

    ``str(err)`` is the one-line report ``path:line:col: message`` used by the CLI (exit code 2).
    """

    def __init__(self, message: str, path: str = "<string>", line: int = 1, col: int = 1):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col

    def with_path(self, path: str) -> "InputError":
        return InputError(self.message, path, self.line, self.col)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"
