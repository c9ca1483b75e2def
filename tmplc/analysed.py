"""One analysed template: parsed, compiled and probed once, then passed to every stage.

Locate, rewrite, prove and every lint rule receive an :class:`Analysed` instead of the source
text, so nothing parses, compiles, probes or instruments the same text twice. Every field is
computed on first use (lint of a template without markers never builds the lossless CST).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import jinja2
from jinja2 import meta, nodes

from .conversations import Case, PerCase
from .errors import NestingError
from .oracle import Oracle
from .probes import THINKING_KWARGS, Features, detect_features, probe_cases, with_prefixes
from .render import environment, has_markers, jinja_error
from .syntax import Template, parse
from .trace import Instrumented, instrument
from .verification import Outcome, Renderings


@contextmanager
def _nesting_limit(label: str) -> Iterator[None]:
    """Turn the errors of a template nested beyond what jinja2's recursive parser, its code
    generator or Python's compiler handle (``RecursionError``, ``too many levels of indentation``,
    ``too many statically nested blocks``) into :class:`NestingError` at ``label``."""
    try:
        yield
    except RecursionError:
        raise NestingError("nested too deeply for jinja2 (maximum recursion depth exceeded)", label, 1, 1) from None
    except (SyntaxError, MemoryError) as exc:  # Python's compiler rejects jinja2's generated code
        raise NestingError(f"nested too deeply for jinja2 to compile ({getattr(exc, 'msg', None) or exc})",
                           label, 1, 1) from None


class Analysed:
    """A chat template and what tmplc knows about it.

    Args:
        source: the template text (untrusted).
        label: where it came from, for ``label:line:col`` messages (a path or a virtual path).
        policy: the oracle's masking policy, ``"as-rendered"`` or ``"last-turn"``
            (:func:`tmplc.oracle.expected_masks`).

    The properties raise :class:`tmplc.errors.InputError` for malformed Jinja: ``ast`` and
    ``compiled`` with jinja2's line, ``template`` (the lossless CST) with line and column; its
    subclass :class:`tmplc.errors.NestingError` for a template nested too deeply to parse or
    compile.
    """

    def __init__(self, source: str, label: str = "<string>", policy: str = "as-rendered"):
        self.source = source
        self.label = label
        self.policy = policy  # the oracle's masking policy (tmplc.oracle.POLICIES)
        self._oracles: PerCase[Oracle | None] = PerCase()
        self._variants: dict[str, Instrumented] = {}
        # This template's renderings of conversation prefixes (:class:`tmplc.verification.Renderings`'
        # memo), shared by its oracles and every proof and probe check that renders it: the
        # counterexample rounds of one augment render the same conversations again, only the
        # training template changes.
        self.renderings: dict[tuple, Outcome] = {}

    def __repr__(self) -> str:
        return f"Analysed({self.label!r}, {len(self.source)} characters)"

    @cached_property
    def has_markers(self) -> bool:
        """The template carries ``{% generation %}`` (the regex transformers uses)."""
        return has_markers(self.source)

    @cached_property
    def ast(self) -> nodes.Template:
        """jinja2's AST, parsed once in the transformers environment."""
        try:
            with _nesting_limit(self.label):
                return environment().parse(self.source)
        except jinja2.TemplateSyntaxError as exc:
            raise jinja_error(exc, self.source, self.label) from None

    @cached_property
    def compiled(self) -> jinja2.Template:
        """The template compiled from :attr:`ast` (jinja2 parses the text once)."""
        try:
            with _nesting_limit(self.label):
                return environment().from_string(self.ast)
        except jinja2.TemplateSyntaxError as exc:  # rejected by jinja2's compiler, not its parser
            raise jinja_error(exc, self.source, self.label) from None

    @cached_property
    def template(self) -> Template:
        """The lossless concrete syntax tree."""
        with _nesting_limit(self.label):
            return parse(self.source, self.label)

    @cached_property
    def thinking(self) -> tuple[str, ...]:
        """Reasoning switches among the template's undeclared variables (``enable_thinking``...)."""
        names = meta.find_undeclared_variables(self.ast)
        return tuple(n for n in THINKING_KWARGS if n in names)

    @cached_property
    def features(self) -> Features:
        """What the template accepts, found by probing (:func:`tmplc.probes.detect_features`)."""
        return detect_features(self.compiled, self.thinking)

    @cached_property
    def probes(self) -> list[Case]:
        """The fixed probe conversations (:func:`tmplc.probes.probe_cases`)."""
        return probe_cases(self.features)

    @cached_property
    def probes_and_prefixes(self) -> list[Case]:
        """Each probe followed by its prefixes that end with an assistant message (what locate,
        the mask rules and the out-of-sync rule render)."""
        return with_prefixes(self.probes)

    @cached_property
    def instrumented(self) -> Instrumented:
        """The instrumented copy of the CST (:mod:`tmplc.trace`)."""
        return instrument(self.template, self.thinking)

    def instrumented_variant(self, source: str) -> Instrumented:
        """The instrumented copy of a rewrite of this template (a split, a moved marker), parsed and
        compiled once per distinct text: the rewrite rounds of one augment meet the same splits
        again (its ``template`` field is the CST the sites point into).

        Raises:
            InputError: ``source`` is malformed Jinja (a bug in the rewrite).
        """
        hit = self._variants.get(source)
        if hit is None:
            hit = self._variants[source] = instrument(parse(source), self.thinking)
        return hit

    def oracle(self, case: Case) -> Oracle | None:
        """The oracle's expected masks of ``case`` rendered by this template (memoised per case
        object), or None when the template raises on the conversation or a prefix of it."""
        return self._oracles.get(case, lambda c: Renderings(self.compiled, c, self.renderings, self.policy).oracle())


def analyse(source: str, label: str = "<string>") -> Analysed:
    """Analyse ``source`` for augment: build the lossless CST, then compile.

    Raises:
        InputError: malformed Jinja: from the lossless parser (line and column) when it rejects
            the text, else from jinja2 (line).
    """
    a = Analysed(source, label)
    a.template  # noqa: B018
    a.compiled  # noqa: B018
    return a


__all__ = ["Analysed", "analyse"]
