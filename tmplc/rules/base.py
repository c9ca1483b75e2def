"""Rule base class, diagnostics and the lint context shared by every rule.

A rule is one module ``tmplNNN_name.py`` holding one :class:`Rule` subclass with a ``code``
(``TMPLnnn``), a kebab-case ``name``, a docstring with the fixed sections *What it does*,
*Why it matters*, *Example*, *Use instead*, *Fix safety*, and ``examples``: bad and good
templates that run as tests (the Fixit idea: the examples are the tests).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..analysed import Analysed
from ..conversations import Case
from ..errors import InputError
from ..syntax import Block, LineIndex, Template
from .masks import MaskAnalysis, analyse

SECTIONS = ("What it does", "Why it matters", "Example", "Use instead", "Fix safety")


@dataclass(frozen=True)
class Diagnostic:
    """One finding. ``line``/``col`` are 1-based characters; ``severity`` is error or warning."""

    code: str
    name: str
    message: str
    path: str
    line: int
    col: int
    severity: str = "error"

    def to_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "message": self.message, "path": self.path,
                "line": self.line, "col": self.col, "severity": self.severity}


@dataclass(frozen=True)
class Example:
    """A template that must give exactly ``codes`` (at ``line`` when given) for the rule's code."""

    source: str
    bad: bool
    line: int | None = None
    training: bool = False
    original: str | None = None  # for rules comparing with a source template
    path: str = "example.jinja"  # the lint label, for rules that depend on where the template lives
    tokenizer: str | None = None  # a test tokenizer by name ("qwen3", see tests/real_tokenizers.py)


def Bad(source: str, line: int | None = None, training: bool = False, original: str | None = None,  # noqa: N802
        path: str = "example.jinja", tokenizer: str | None = None) -> Example:
    return Example(source, True, line, training, original, path, tokenizer)


def Good(source: str, training: bool = False, original: str | None = None, path: str = "example.jinja",  # noqa: N802
         tokenizer: str | None = None) -> Example:
    return Example(source, False, None, training, original, path, tokenizer)


@dataclass
class Context:
    """What rules see: the analysed template (:class:`tmplc.analysed.Analysed`), whether it is a
    training template, its original (for the out-of-sync rule) and lazy analyses."""

    analysed: Analysed
    training: bool = False
    original: Analysed | None = None  # the source template named by the header or --source
    syntax_error: InputError | None = None
    tokenizer: object | None = None  # a fast tokenizer (``lint --tokenizer``) for the token rules
    sanitize_control_tokens: bool = False  # ``lint --sanitize-control-tokens``: token rules tokenize as that option does

    @classmethod
    def build(cls, path: str, source: str, training: bool = False, original: str | None = None,
              original_label: str | None = None, tokenizer: object | None = None,
              sanitize_control_tokens: bool = False) -> Context:
        """Check syntax with jinja2's parser and compiler (what transformers' ``from_string``
        rejects, including templates nested too deeply to compile); the lossless CST is built
        only when a rule asks for it, so linting a template without markers stays cheap."""
        ctx = cls(Analysed(source, path), training,
                  Analysed(original, original_label or "its source") if original is not None else None,
                  tokenizer=tokenizer, sanitize_control_tokens=sanitize_control_tokens)
        if source == "":
            ctx.syntax_error = InputError("empty template", path, 1, 1, "empty")
            return ctx
        try:
            ctx.analysed.compiled  # noqa: B018 - parse and compile: the compiler rejects more
        except InputError as exc:
            try:
                ctx.analysed.template  # noqa: B018 - the CST pinpoints the column
            except InputError as err:
                ctx.syntax_error = err
            else:
                ctx.syntax_error = exc
        return ctx

    @property
    def path(self) -> str:
        return self.analysed.label

    @property
    def source(self) -> str:
        return self.analysed.source

    @cached_property
    def template(self) -> Template | None:
        """The lossless CST, or None when the template does not parse."""
        if self.syntax_error is not None:
            return None
        try:
            return self.analysed.template
        except InputError as exc:
            self.syntax_error = exc
            return None

    @cached_property
    def generation_tags(self) -> list[int]:
        """Start offsets (characters) of the template's ``{% generation %}`` tags in source order:
        entry ``n`` is the tag of the spans a render records with block index ``n``
        (:attr:`tmplc.verification.Rendered.blocks`). Empty when the template does not parse."""
        t = self.template
        if t is None:
            return []
        return [n.start for n, _ in t.walk() if isinstance(n, Block) and n.name == "generation"]

    @cached_property
    def lines(self) -> LineIndex:
        return LineIndex(self.source)

    def position(self, offset: int) -> tuple[int, int]:
        return self.lines.position(offset)

    @property
    def probes(self) -> list[Case]:
        """The probe conversations this template accepts (computed once per file)."""
        return self.analysed.probes

    @cached_property
    def masks(self) -> MaskAnalysis:
        """Probe-set comparison of the template's generation spans with the oracle."""
        return analyse(self.analysed)


class Rule:
    """Base class: subclasses set ``code``, ``name``, ``severity``, ``examples`` and ``check``."""

    code = "TMPL999"
    name = "rule"
    severity = "error"
    needs_template = True
    default = True  # in the default selection (``--select`` reaches the others)
    examples: list[Example] = []

    def check(self, ctx: Context) -> Iterator[Diagnostic]:  # pragma: no cover - abstract
        raise NotImplementedError

    def at(self, ctx: Context, offset: int, message: str) -> Diagnostic:
        line, col = ctx.position(offset)
        return Diagnostic(self.code, self.name, message, ctx.path, line, col, self.severity)

    @classmethod
    def doc(cls) -> str:
        """The rule's documentation: its docstring, with the *Example* and *Use instead* sections
        generated from its first bad and first good example (any prose the docstring has there
        follows the code), so the documented examples are the tested ones."""
        summary, sections = doc_sections(inspect.cleandoc(cls.__doc__ or ""))
        for name, bad in (("Example", True), ("Use instead", False)):
            example = next((e for e in cls.examples if e.bad is bad), None)
            if example is not None:
                code = _code_block(example)
                sections[name] = code + (["", *sections[name]] if sections.get(name) else [])
        out = [summary]
        for name in SECTIONS:
            out += ["", f"{name}:", *(f"    {line}" if line else "" for line in sections.get(name, []))]
        return "\n".join(out)


def doc_sections(doc: str) -> tuple[str, dict[str, list[str]]]:
    """Split a rule docstring into its summary and its sections (``{name: lines}``, bodies
    dedented by 4); the one reader of the docstring layout, for :meth:`Rule.doc` and docs/rules.md."""
    summary: list[str] = []
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in doc.splitlines():
        if line.rstrip(":") in SECTIONS and line.endswith(":"):
            current = line.rstrip(":")
            sections[current] = []
        elif current is None:
            summary.append(line)
        else:
            sections[current].append(line[4:] if line.startswith("    ") else line.strip())
    for body in sections.values():
        while body and not body[-1]:
            body.pop()
    return "\n".join(summary).strip(), sections


def _code_block(example: Example) -> list[str]:
    where = "" if example.path == "example.jinja" else f" (as ``{example.path}``)"
    kind = "training template" if example.training else "template"
    return [f"A {kind}{where}:", "", "```jinja", *example.source.splitlines(), "```"]


def is_training_path(path: str) -> bool:
    return Path(path).stem.endswith("_training")
