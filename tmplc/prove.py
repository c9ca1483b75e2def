"""The proof: properties checked on hypothesis-generated conversations.

For every conversation and kwargs drawn by :func:`tmplc.conversations.cases`:

* *unchanged rendering* — the training template renders every prefix of the conversation,
  with and without the generation prompt, byte for byte like the original, and raises exactly
  where the original raises (same exception type and message);
* *prefix preservation* — follows: identical prefix renderings keep every prefix property;
  with ``--prefix-preserving`` (``source``: the shipped template, the original being its rewrite)
  history is also checked to be rendered as generated, and the rewrite to render like the
  shipped template outside history assistant turns;
* *correct masks* — the union of ``{% generation %}`` spans in the full rendering equals the
  oracle's expected mask (:mod:`tmplc.oracle`), compared as character offsets.

A failure carries the shrunk conversation, its kwargs and the rendering with the expected and
actual spans marked.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum

import platformdirs
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import HypothesisException

from .analysed import Analysed
from .conversations import Case
from .reasons import Reason
from .render import RenderLimit, budget
from .strategies import cases, edge_texts, texts
from .tokens import TokenChecker, TokenReport
from .verification import check_case

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    # hypothesis caches its unicode tables under ``./.hypothesis``: keep the current directory
    # clean (``augment --check`` writes nothing there); the proof itself uses no database.
    set_hypothesis_home_dir(platformdirs.user_cache_path("tmplc") / "hypothesis")


class FailureKind(str, Enum):
    """Which property failed."""

    RENDER = "render"  # the training template renders a prefix differently (or raises differently)
    MASK = "mask"  # its generation spans differ from the oracle's masks
    ORACLE = "oracle"  # the oracle cannot give a correct mask for a turn (``reason`` says why)
    HYPOTHESIS = "hypothesis"  # hypothesis itself gave up (flaky or unsatisfiable)
    BUDGET = "budget"  # a render exceeded the time or size budget (``reason`` says which)
    TOKENS = "tokens"  # with a tokenizer: a token inside a span not masked, or one outside masked
    HISTORY = "history"  # --prefix-preserving: history not rendered as generated, or a change outside it


@dataclass(frozen=True)
class Failure:
    """A failed property on a (shrunk) conversation; ``detail`` is the rendering with expected and
    actual spans marked (mask failures), ``reason`` the oracle's reason code (oracle failures)."""

    kind: FailureKind
    message: str
    case: Case
    detail: str = ""
    reason: Reason | None = None


class ProofFailure(AssertionError):
    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class ProofReport:
    """What the proof did: ``examples`` conversations drawn, ``valid`` of them rendered by the
    original, ``turns_checked`` assistant turns compared with the oracle; ``failure`` is None
    when every property held."""

    examples: int = 0
    valid: int = 0
    seed: int = 0
    failure: Failure | None = None
    turns_checked: int = 0
    # With a tokenizer (counts in tokens): renderings checked at token level, tokens straddling a
    # span edge (a warning: inherent to the text, e.g. Qwen's "\n" cue + content "\n\n" -> one
    # "\n\n\n" token), the first one described, and the stops seen (TRL's stop-token check).
    token_renderings: int = 0
    mapping: str = ""  # the installed transformers' span -> token mapping (tmplc.tokens.installed_mapping)
    straddling: int = 0
    straddling_trained: int = 0  # of those, the ones the mask trains (always all under "overlap")
    straddling_detail: str = ""
    open_end: int = 0  # tokens of an unterminated final turn's last character left out (TokenReport.open_end)
    special_stops: set[str] = field(default_factory=set)
    plain_text_stops: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def add_tokens(self, reports: list[TokenReport]) -> None:
        """Count the token reports of one conversation (warnings; failures are raised by :func:`check`)."""
        for r in reports:
            self.token_renderings += 1
            self.mapping = self.mapping or r.mapping
            self.straddling += r.straddling
            self.straddling_trained += r.straddling_trained
            if not self.straddling_detail and r.straddles:
                self.straddling_detail = r.straddles[0].describe()
            self.open_end += r.open_end
            if r.stop_text is not None:
                (self.special_stops if r.stop_token_trained else self.plain_text_stops).add(r.stop_text)


def check(original: Analysed, training: Analysed, case: Case, report: ProofReport | None = None,
          memos: tuple[dict, ...] | None = None, tokens: TokenChecker | None = None, append: str = "",
          source: Analysed | None = None) -> None:
    """Check every property on one conversation (:func:`tmplc.verification.check_case`), at token
    level too when ``tokens`` is given; ``append`` is ``--append-stop``'s text; ``source`` the
    shipped template when ``original`` is its ``--prefix-preserving`` rewrite.

    Raises:
        ProofFailure: the first property that fails, with the conversation.
    """
    result = check_case(original.compiled, training.compiled, case, memos, tokens, append, original.policy,
                        None if source is None else source.compiled)
    if result.render_diff is not None:
        raise ProofFailure(Failure(FailureKind.RENDER, result.render_diff.describe(), case))
    if result.history_diff is not None:
        raise ProofFailure(Failure(FailureKind.HISTORY, "the rendering changed outside history assistant turns: "
                                   + result.history_diff.describe(), case))
    if result.prefix_break is not None:
        raise ProofFailure(Failure(FailureKind.HISTORY, f"assistant message {result.prefix_break} is not rendered in "
                                   "history as generated: render(messages[:k+1]) is not a prefix of the rendering",
                                   case))
    if report is not None and result.valid:
        report.valid += 1
    if result.problem is not None:
        p = result.problem
        raise ProofFailure(Failure(FailureKind.ORACLE, f"{p.code}: {p.message}", case, reason=p.code))
    if result.oracle is not None and report is not None:
        report.turns_checked += len(result.oracle.turns)
    if result.defects:
        raise ProofFailure(Failure(FailureKind.MASK, result.mask_message(), case, result.mask_detail()))
    if report is not None:
        report.add_tokens(result.tokens)
    bad = result.token_failure
    if bad is not None:
        raise ProofFailure(Failure(FailureKind.TOKENS, f"token-level mask: {bad.detail}", case))


@contextmanager
def _reproducible():
    """Hypothesis (6.13x and later) biases generation with constants harvested from every local
    module loaded so far, so one seed draws different conversations depending on what the process
    imported (a test run vs the CLI). The proof must be reproducible from its seed: while it runs,
    that pool is empty. Internal API, hence the guard: without it, nothing is patched."""
    try:
        from hypothesis.internal.conjecture import providers

        original, cache, empty = providers._get_local_constants, providers.CONSTANTS_CACHE, providers.Constants()
    except (ImportError, AttributeError):  # pragma: no cover - other hypothesis versions
        yield
        return
    cache.cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def limit_failure(exc: RenderLimit) -> Failure:
    """The :class:`Failure` of a render cut off by the budget, with the conversation it rendered."""
    messages, tools, kwargs, agp = exc.call if exc.call is not None else ([], None, {}, False)
    case = Case(list(messages), tools, dict(kwargs), agp)
    return Failure(FailureKind.BUDGET, f"{exc.reason}: {exc.detail}", case, reason=Reason(exc.reason))


def prove(original: Analysed, training: Analysed, examples: int = 200, seed: int = 0,
          timeout: float | None = None, tokens: TokenChecker | None = None, append: str = "",
          source: Analysed | None = None) -> ProofReport:
    """Run the proof with ``examples`` hypothesis examples from ``seed`` (deterministic).

    Args:
        original: the shipped template. training: the template with markers.
        examples: conversations drawn from :func:`tmplc.strategies.cases` of the original's features.
        timeout: seconds for the whole proof (:func:`tmplc.render.budget`; None: only the budget
            the caller runs in, if any).
        tokens: the token-level check (:class:`tmplc.tokens.TokenChecker`); conversations then
            also draw field bodies that start and end with multi-byte characters
            (:func:`tmplc.strategies.edge_texts`).
        append: ``--append-stop``'s text: the rendering may differ by exactly that text after a
            final assistant turn without a stop, and the masks cover it (TRL PR #6044).
        source: ``--prefix-preserving``: the shipped template, ``original`` being its rewrite;
            the proof then also checks that history is rendered as generated and that the
            rewrite renders like ``source`` outside history assistant turns (``FailureKind.HISTORY``).

    Returns:
        A :class:`ProofReport`; a failure holds the shrunk counterexample, or the conversation
        whose render exceeded the budget (``FailureKind.BUDGET``, reason ``render-timeout`` or
        ``render-too-large``).
    """
    report = ProofReport(seed=seed)
    # Renderings shared by the examples (identical prefixes recur); the original's and the
    # shipped template's by every proof of theirs (Analysed.renderings).
    memos: tuple[dict, ...] = (original.renderings, {}, {} if source is None else source.renderings)

    @hseed(seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )
    @given(cases(original.features, None if tokens is None else st.one_of(texts, edge_texts())))
    def run(case: Case):
        report.examples += 1
        check(original, training, case, report, memos, tokens, append, source)

    try:
        with budget(timeout), _reproducible():
            run()
    except RenderLimit as exc:
        report.failure = limit_failure(exc)
    except ProofFailure as exc:
        report.failure = exc.failure
    except HypothesisException as exc:  # pragma: no cover - flaky or unsatisfiable
        report.failure = Failure(FailureKind.HYPOTHESIS, str(exc), Case([]))
    return report
