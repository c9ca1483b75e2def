"""``tmplc lint``: run the rule catalogue over templates; format the diagnostics.

The lint path imports jinja2, lark and click only (never hypothesis, transformers or torch).
Suppression: a Jinja comment ``{#- tmplc: noqa TMPL004, TMPL005 -#}`` silences those codes on its
own line and the next one; ``{# tmplc: noqa #}`` silences every code there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import InputError
from .render import RenderLimit, budget
from .rules import Context, Diagnostic, Rule
from .rules.base import is_training_path

LINT_TIMEOUT = 20.0  # seconds of rendering per linted template (its probe set takes well under 1 s)
NOQA_RE = re.compile(r"\{#[-+]?\s*tmplc:\s*noqa\b([^#]*)#\}")
HEADER_SOURCE_RE = re.compile(r"\A\{# tmplc [^:]*: training template of (.+?); proof:")


def suppressions(source: str) -> dict[int, set[str] | None]:
    """Line (1-based) → suppressed codes (None: all), from noqa comments."""
    out: dict[int, set[str] | None] = {}
    for m in NOQA_RE.finditer(source):
        line = source.count("\n", 0, m.start()) + 1
        codes = {c.upper() for c in re.findall(r"[A-Za-z]+\d+", m.group(1))} or None
        for ln in (line, line + 1):
            prev = out.get(ln, set())
            out[ln] = None if codes is None or prev is None else prev | codes
    return out


def lint_source(source: str, path: str, rules: list[Rule], training: bool | None = None,
                original: str | None = None, original_label: str | None = None,
                tokenizer: object | None = None, sanitize_control_tokens: bool = False) -> list[Diagnostic]:
    """Run ``rules`` on one template.

    Args:
        source: template text. path: label used in diagnostics.
        training: treat as a training template (default: name ends ``_training`` or tmplc header).
        original, original_label: the source template, for the out-of-sync rule.
        tokenizer: a fast tokenizer (:func:`tmplc.tokens.load_tokenizer`) for the token rules; None
            skips them (and never imports transformers).
        sanitize_control_tokens: the token rules tokenize as ``apply_chat_template(...,
            sanitize_control_tokens=True)`` does (:func:`tmplc.tokens.sanitized_encoding`).
    Returns:
        Diagnostics sorted by position, noqa-suppressed ones removed. Rendering (the mask rules'
        probe set) runs in a :func:`tmplc.render.budget` of :data:`LINT_TIMEOUT` seconds; a
        template that exceeds it gets one error from the rule that was running ("not checked:
        render-timeout ...") and no further rule runs.
    """
    if training is None:
        training = is_training_path(path) or source.startswith("{# tmplc ")
    ctx = Context.build(path, source, training, original, original_label, tokenizer, sanitize_control_tokens)
    found: list[Diagnostic] = []
    with budget(LINT_TIMEOUT):
        for rule in rules:
            if rule.needs_template and ctx.syntax_error is not None:
                continue
            try:
                found.extend(rule.check(ctx))
            except RenderLimit as exc:  # a hostile template: report it, check nothing more
                found.append(Diagnostic(rule.code, rule.name, f"not checked: {exc.reason}: {exc.detail}", path, 1, 1))
                break
    sup = suppressions(source)
    def suppressed(d: Diagnostic) -> bool:
        if d.line not in sup:
            return False
        codes = sup[d.line]
        return codes is None or d.code in codes

    kept = [d for d in found if not suppressed(d)]
    return sorted(kept, key=lambda d: (d.line, d.col, d.code))


def discover(paths: list[Path]) -> list[Path]:
    """Expand directories into ``*.jinja`` and ``tokenizer_config.json`` files."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and (q.suffix == ".jinja" or q.name == "tokenizer_config.json"))
        else:
            out.append(p)
    return out


def source_of(path: Path, text: str, explicit: Path | None) -> tuple[str | None, str | None]:
    """The original a training template was made from: ``--source`` or the header's name."""
    candidate = explicit
    if candidate is None:
        m = HEADER_SOURCE_RE.match(text)
        if m:
            name = m.group(1)
            candidate = path.with_name(Path(name).name)
    if candidate is None or not candidate.is_file():
        return None, None
    try:
        return candidate.read_text(encoding="utf-8"), str(candidate)
    except (OSError, UnicodeDecodeError):
        return None, None


def code_frame(source: str, line: int, col: int) -> str:
    lines = source.split("\n")
    if not 0 < line <= len(lines):
        return ""
    text = lines[line - 1].rstrip("\r")
    shown = text[:120]
    return f"  {line:>4} | {shown}\n       | {' ' * (col - 1)}^"


def format_text(diags: list[Diagnostic], sources: dict[str, str]) -> str:
    out = []
    for d in diags:
        out.append(f"{d.path}:{d.line}:{d.col}: {d.code} [{d.name}] {d.message}")
        frame = code_frame(sources.get(d.path, ""), d.line, d.col)
        if frame:
            out.append(frame)
    return "\n".join(out)


def format_json(diags: list[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diags], indent=1)


def format_github(diags: list[Diagnostic]) -> str:
    """GitHub workflow commands (``::error file=…,line=…,col=…,title=…::message``), escaped as the
    runner's toolkit does: ``%``, CR and LF everywhere, and ``:`` and ``,`` in properties."""

    def esc(s: str) -> str:
        return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(s: str) -> str:
        return esc(s).replace(":", "%3A").replace(",", "%2C")

    return "\n".join(
        f"::{'error' if d.severity == 'error' else 'warning'} file={prop(d.path)},line={d.line},col={d.col},"
        f"title={prop(f'{d.code} {d.name}')}::{esc(d.message)}" for d in diags
    )


__all__ = ["lint_source", "discover", "format_text", "format_json", "format_github", "InputError"]
