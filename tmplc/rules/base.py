"""Rule base class, diagnostics and the lint context shared by every rule.

A rule is one module ``tmplNNN_name.py`` holding one :class:`Rule` subclass with a ``code``
(``TMPLnnn``), a kebab-case ``name``, a docstring with the fixed sections *What it does*,
*Why it matters*, *Example*, *Use instead*, *Fix safety*, and ``examples``: bad and good
templates that run as tests (the Fixit idea: the examples are the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from ..syntax import LineIndex, Template, parse

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
    tokenizer: str | None = None  # a test tokenizer by name ("qwen3", see tests/real_tokenizers.py)


def Bad(source: str, line: int | None = None, training: bool = False, original: str | None = None,  # noqa: N802
        tokenizer: str | None = None) -> Example:
    return Example(source, True, line, training, original, tokenizer)


def Good(source: str, training: bool = False, original: str | None = None, tokenizer: str | None = None) -> Example:  # noqa: N802
    return Example(source, False, None, training, original, tokenizer)


@dataclass
class Context:
    """What rules see: the file, its text, its CST (None on a syntax error) and lazy analyses."""

    path: str
    source: str
    training: bool = False
    original: str | None = None  # the source template named by the header or --source
    original_label: str | None = None
    syntax_error: InputError | None = None
    tokenizer: object | None = None  # a fast tokenizer (``lint --tokenizer``) for the token rules

    @classmethod
    def build(cls, path: str, source: str, training: bool = False, original: str | None = None,
              original_label: str | None = None, tokenizer: object | None = None) -> "Context":
        """Check syntax with jinja2's parser (no code generation); the lossless CST is built
        only when a rule asks for it, so linting a template without markers stays cheap."""
        ctx = cls(path, source, training, original, original_label, tokenizer=tokenizer)
        from jinja2 import TemplateSyntaxError

        from ..render import environment

        if source == "":
            ctx.syntax_error = InputError("empty template", path, 1, 1)
            return ctx
        try:
            environment().parse(source)
        except TemplateSyntaxError as exc:
            try:
                parse(source, path)
            except InputError as err:  # the CST pinpoints the column
                ctx.syntax_error = err
            else:
                from ..cli_support import jinja_error

                ctx.syntax_error = jinja_error(exc, source, path)
        return ctx

    @cached_property
    def template(self) -> Template | None:
        """The lossless CST, or None when the template does not parse."""
        if self.syntax_error is not None:
            return None
        try:
            return parse(self.source, self.path)
        except InputError as exc:
            self.syntax_error = exc
            return None

    @cached_property
    def lines(self) -> LineIndex:
        return LineIndex(self.source)

    def position(self, offset: int) -> tuple[int, int]:
        return self.lines.position(offset)

    @cached_property
    def probes(self):
        """The probe conversations this template accepts (computed once per file)."""
        from ..conversations import detect_features, probe_cases

        return probe_cases(detect_features(self.source))

    @cached_property
    def lined_renders(self):
        """The probes rendered with each generation span's tag line (token rules)."""
        from .spans import lined_renders

        return lined_renders(self.source, self.probes)

    @cached_property
    def masks(self):
        """Probe-set comparison of the template's generation spans with the oracle."""
        from .masks import analyse

        return analyse(self.source, self.template, self.probes)


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
        import inspect

        return inspect.cleandoc(cls.__doc__ or "")


def is_training_path(path: str) -> bool:
    return Path(path).stem.endswith("_training")
