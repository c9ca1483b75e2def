"""Where templates come from and where training templates go (the one owner of file I/O).

Reads a ``.jinja`` file, a ``chat_template.jinja`` or a ``tokenizer_config.json`` whose
``chat_template`` is a string or a list of ``{name, template}`` (a named chat template), names
the output ``NAME_training.jinja``, checks every output path before any work starts
(:func:`plan_outputs`) and writes all outputs at once (:func:`write_all`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, OutputError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", re.ASCII)
NAME_RULE = "1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"


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
        InputError: missing or unreadable file, a directory or other non-regular file, non-UTF-8
            bytes, a JSON without a ``chat_template`` string or a non-empty list of
            ``{name, template}`` with safe, distinct names (:data:`NAME_RULE`) and string templates.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise InputError("no such file", str(path), 0, 0)
        if path.is_dir():
            raise InputError("is a directory (pass template files)", str(path), 0, 0)
        if not path.is_file():
            raise InputError("not a regular file", str(path), 0, 0)
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", str(path), 0, 0) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise InputError(f"not UTF-8 (byte 0x{data[exc.start]:02x})", str(path), line, col) from None
    if path.suffix == ".json":
        return _json_sources(path, text)
    return [Source(path, text)]


def _position(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based line and column of the ``nth`` occurrence of ``needle`` in ``text`` (1, 1 if absent)."""
    at = -1
    for _ in range(nth + 1):
        at = text.find(needle, at + 1)
        if at < 0:
            return 1, 1
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


def _json_sources(path: Path, text: str) -> list[Source]:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", str(path), exc.lineno, exc.colno) from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply", str(path), 1, 1) from None
    tmpl = cfg.get("chat_template") if isinstance(cfg, dict) else None
    if isinstance(tmpl, str):
        return [Source(path, _unicode(tmpl, path, text, '"chat_template"'))]
    if not isinstance(tmpl, list):
        raise InputError("no 'chat_template' string or list of {name, template}", str(path), 1, 1, "no-template")
    if not tmpl:
        raise InputError("'chat_template' is an empty list", str(path), *_position(text, '"chat_template"'))
    out: list[Source] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(tmpl):
        if not (isinstance(item, dict) and "name" in item and "template" in item):
            raise InputError(f"chat_template[{i}] is not a {{name, template}} object", str(path), 1, 1)
        name = item["name"]
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InputError(f"chat_template[{i}]: name {json.dumps(name)} is not a safe file-name stem ({NAME_RULE})",
                             str(path), *(_position(text, json.dumps(name)) if isinstance(name, str) else (1, 1)))
        where = _position(text, json.dumps(name), seen.get(name, 0))
        if name in seen:
            raise InputError(f"duplicate chat_template name {json.dumps(name)}", str(path), *where)
        seen[name] = 1
        if not isinstance(item["template"], str):
            raise InputError(f"chat_template[{i}] ({name}): template is not a string "
                             f"({type(item['template']).__name__})", str(path), *where)
        out.append(Source(path, _unicode(item["template"], path, text, json.dumps(name)), name))
    return out


def _unicode(template: str, path: Path, text: str, near: str) -> str:
    """``template`` unless it holds a lone surrogate (``"\\udcff"`` in JSON), which is not text."""
    try:
        template.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"template holds a lone surrogate (U+{ord(template[exc.start]):04X}), not valid Unicode",
                         str(path), *_position(text, near)) from None
    return template


def output_name(src: Source) -> str:
    """``NAME_training.jinja`` for ``src``: its file stem (``chat_template`` for a
    ``tokenizer_config.json``), then ``_NAME`` for a named template."""
    stem = src.path.stem if src.path.name != "tokenizer_config.json" else "chat_template"
    if src.path.name == "chat_template.jinja":
        stem = "chat_template"
    if src.name:
        stem = f"{stem}_{src.name}"
    return f"{stem}_training.jinja"


def is_directory_target(out: str | Path) -> bool:
    """``-o OUT`` names a directory: it ends with a path separator or is an existing directory."""
    text = str(out)
    return text.endswith(os.sep) or (os.altsep is not None and text.endswith(os.altsep)) or Path(text).is_dir()


def output_path(src: Source, out: str | Path | None) -> Path:
    """``NAME_training.jinja`` beside the input, inside ``out`` (a directory), or at ``out``."""
    filename = output_name(src)
    if out is None:
        return src.path.with_name(filename)
    if is_directory_target(out):
        return Path(out) / filename
    return Path(out)


def _check_directory(directory: Path) -> None:
    """Raise :class:`OutputError` unless ``directory`` exists and a file can be created in it
    (probed with an anonymous temporary file, so it also holds for root and read-only mounts)."""
    if not directory.exists():
        raise OutputError("no such directory", str(directory))
    if not directory.is_dir():
        raise OutputError("not a directory", str(directory))
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise OutputError(f"cannot create files in this directory ({exc.strerror or exc})", str(directory)) from None


def plan_outputs(sources: list[Source], out: str | Path | None) -> list[Path]:
    """The output path of each source, checked before any proof runs.

    Args:
        sources: the templates read by :func:`read_sources`, in order.
        out: ``-o`` as typed (a trailing ``/`` means a directory), or None (beside each input).

    Returns:
        One path per source.

    Raises:
        OutputError: several templates and ``out`` is not a directory; a missing or unwritable
            directory; a directory where the file should go; an input as output; two templates
            writing one file.
    """
    if out is not None and len(sources) > 1 and not is_directory_target(out):
        raise OutputError("-o must be a directory when several templates are given", str(out))
    if out is not None and is_directory_target(out):
        _check_directory(Path(out))
    inputs = {s.path.resolve() for s in sources}
    dests: list[Path] = []
    checked: set[Path] = set()
    for src in sources:
        dest = output_path(src, out)
        parent = dest.parent
        if parent.resolve() not in checked:
            _check_directory(parent)
            checked.add(parent.resolve())
        if dest.is_dir():
            raise OutputError("is a directory", str(dest))
        if len(os.fsencode(dest.name)) > 240:  # NAME_MAX is 255, and the temporary file adds 14
            raise OutputError("file name too long", str(dest))
        if dest.resolve() in inputs:
            raise OutputError("refusing to overwrite the input", str(dest))
        if dest.resolve() in {d.resolve() for d in dests}:
            raise OutputError("two templates would write the same file", str(dest))
        dests.append(dest)
    return dests


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _signals_blocked() -> Iterator[None]:
    """Defer SIGINT, SIGTERM and SIGHUP while the block runs (delivered when it ends), so a kill
    during a write never leaves a temporary file behind. A no-op where unsupported."""
    sigs = {signal.SIGINT, signal.SIGTERM} | ({signal.SIGHUP} if hasattr(signal, "SIGHUP") else set())
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - platforms without sigmask
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _write_temp(path: Path, text: str) -> str:
    """Write ``text`` to a new temporary file beside ``path`` with the mode the target has (an
    existing file) or a plain write would give it (``0o666 & ~umask``); returns its name."""
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_all(items: list[tuple[Path, str]]) -> None:
    """Write every ``(path, text)``: each text goes to a temporary file beside its target, and
    only when all are written are they renamed over the targets (one ``os.replace`` each).

    SIGINT/SIGTERM/SIGHUP are deferred until the writes end, and any error removes the temporary
    files, so no ``.NAME.*.tmp`` file is left behind. Modes: an existing target keeps its mode, a
    new file gets ``0o666 & ~umask``.

    Raises:
        OSError: a file could not be written (no target has been replaced then).
    """
    temps: list[tuple[str, Path]] = []
    with _signals_blocked():
        try:
            for path, text in items:
                temps.append((_write_temp(path, text), path))
            for tmp, path in temps:
                os.replace(tmp, path)
        except BaseException:
            for tmp, _ in temps:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            raise


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`write_all` of one file); creates missing
    parent directories (reports of ``tmplc corpus``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_all([(Path(path), text)])
