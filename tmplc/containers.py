"""Where templates come from and where training templates go (the one owner of file I/O).

Reads a ``.jinja`` file, a ``chat_template.jinja`` or a ``tokenizer_config.json`` whose
``chat_template`` is a string or a list of ``{name, template}`` (a named chat template), names
the output ``NAME_training.jinja``, and writes it atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError


@dataclass
class Source:
    """One template read from ``path``; ``name`` is the named template of a
    ``tokenizer_config.json`` list (``None`` for a plain file or a string ``chat_template``)."""

    path: Path
    text: str
    name: str | None = None

    @property
    def label(self) -> str:
        return f"{self.path}#chat_template[{self.name}]" if self.name else str(self.path)


def read_sources(path: Path) -> list[Source]:
    """Read the templates in ``path`` (a ``.jinja`` file or a ``tokenizer_config.json``).

    Raises:
        InputError: missing file, a directory, non-UTF-8 bytes, JSON without ``chat_template``.
    """
    if not path.exists():
        raise InputError("no such file", str(path), 0, 0)
    if path.is_dir():
        raise InputError("is a directory (pass template files)", str(path), 0, 0)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise InputError(f"not UTF-8 (byte 0x{data[exc.start]:02x})", str(path), line, col) from None
    if path.suffix == ".json":
        try:
            cfg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc.msg}", str(path), exc.lineno, exc.colno) from None
        tmpl = cfg.get("chat_template") if isinstance(cfg, dict) else None
        if isinstance(tmpl, str):
            return [Source(path, tmpl)]
        if isinstance(tmpl, list) and all(isinstance(t, dict) and "name" in t and "template" in t for t in tmpl):
            return [Source(path, t["template"], t["name"]) for t in tmpl]
        raise InputError("no 'chat_template' string or list of {name, template}", str(path), 1, 1)
    return [Source(path, text)]


def output_path(src: Source, out: Path | None) -> Path:
    """``NAME_training.jinja`` beside the input, or inside/at ``out``."""
    stem = src.path.stem if src.path.name != "tokenizer_config.json" else "chat_template"
    if src.path.name == "chat_template.jinja":
        stem = "chat_template"
    if src.name:
        stem = f"{stem}_{src.name}"
    filename = f"{stem}_training.jinja"
    if out is None:
        return src.path.with_name(filename)
    if out.is_dir():
        return out / filename
    return out


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same directory + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
