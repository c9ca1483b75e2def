"""The proof: properties checked on hypothesis-generated conversations.

For every conversation and kwargs drawn by :func:`tmplc.conversations.cases`:

* *unchanged rendering* — the training template renders every prefix of the conversation,
  with and without the generation prompt, byte for byte like the original, and raises exactly
  where the original raises (same exception type and message);
* *prefix preservation* — follows: identical prefix renderings keep every prefix property;
* *correct masks* — the union of ``{% generation %}`` spans in the full rendering equals the
  oracle's expected mask (:mod:`tmplc.oracle`), compared as character offsets.

A failure carries the shrunk conversation, its kwargs and the rendering with the expected and
actual spans marked.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from hypothesis import HealthCheck, given, seed as hseed, settings
from hypothesis.errors import HypothesisException

from .conversations import Case, Features
from .strategies import cases
from .oracle import Problem, expected_masks
from .render import compile_template


@dataclass
class Failure:
    kind: str  # "render", "error", "mask", "oracle"
    message: str
    case: Case
    detail: str = ""


class ProofFailure(AssertionError):
    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class ProofReport:
    """What the proof did: ``examples`` conversations drawn, ``valid`` of them rendered by the
    original; ``failure`` is None when every property held."""

    examples: int = 0
    valid: int = 0
    seed: int = 0
    failure: Failure | None = None
    turns_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.failure is None


def _outcome(tpl, messages, case: Case, agp: bool):
    try:
        return case.render(tpl, messages, agp)
    except Exception as exc:  # noqa: BLE001 - any template error is an outcome to compare
        return exc


def _same(a, b) -> bool:
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b) and str(a) == str(b)
    return a[0] == b[0]


def mark_spans(text: str, spans: list[tuple[int, int]], open_: str, close: str) -> str:
    out, prev = [], 0
    for a, b in sorted(spans):
        out += [text[prev:a], open_, text[a:b], close]
        prev = b
    out.append(text[prev:])
    return "".join(out)


def check_case(original: str, training: str, case: Case, report: ProofReport | None = None) -> None:
    """Check every property on one conversation; raise :class:`ProofFailure` on the first
    that fails. Offsets are characters of the rendered text."""
    orig, train = compile_template(original), compile_template(training)
    msgs = case.messages
    renders: dict[tuple[int, bool], object] = {}
    for k in range(1, len(msgs) + 1):
        for agp in (False, True):
            a = _outcome(orig, msgs[:k], case, agp)
            b = _outcome(train, msgs[:k], case, agp)
            if not _same(a, b):
                what = f"{type(a).__name__}: {a}" if isinstance(a, Exception) else "text"
                other = f"{type(b).__name__}: {b}" if isinstance(b, Exception) else "text"
                raise ProofFailure(Failure("render", f"rendering of messages[:{k}] (add_generation_prompt={agp}) changed: original gives {what}, training gives {other}", case))
            renders[(k, agp)] = a
    last_agp = case.full_agp
    full = renders[(len(msgs), last_agp)]
    if isinstance(full, Exception):
        return
    if report is not None:
        report.valid += 1

    def r(m, agp):
        out = renders.get((len(m), agp))
        if out is None:
            out = _outcome(orig, m, case, agp)
        if isinstance(out, Exception):
            raise out
        return out[0]

    try:
        oracle = expected_masks(r, case)
    except Exception:  # noqa: BLE001 - a prefix that raises: no oracle for this conversation
        return
    if oracle.problems:
        p: Problem = oracle.problems[0]
        raise ProofFailure(Failure("oracle", f"{p.code}: {p.message}", case, p.code))
    text, spans = _outcome(train, msgs, case, last_agp)  # type: ignore[misc]
    actual = {c for a, b in spans for c in range(a, b)}
    expected = oracle.mask()
    if report is not None:
        report.turns_checked += len(oracle.turns)
    if actual != expected:
        detail = (
            "expected ⟦…⟧:\n" + mark_spans(text, list(oracle.turns.values()), "⟦", "⟧")
            + "\nactual ⟦…⟧:\n" + mark_spans(text, _merge(spans), "⟦", "⟧")
        )
        missing, extra = sorted(expected - actual), sorted(actual - expected)
        what = []
        if missing:
            what.append(f"{len(missing)} expected characters not masked (first at {missing[0]}: {text[missing[0]:missing[0] + 20]!r})")
        if extra:
            what.append(f"{len(extra)} characters masked that the model does not generate (first at {extra[0]}: {text[extra[0]:extra[0] + 20]!r})")
        raise ProofFailure(Failure("mask", "; ".join(what), case, detail))


def _merge(spans):
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [tuple(s) for s in out]


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


def prove(original: str, training: str, features: Features, examples: int = 200, seed: int = 0) -> ProofReport:
    """Run the proof with ``examples`` hypothesis examples from ``seed`` (deterministic).

    Returns a :class:`ProofReport`; a failure holds the shrunk counterexample.
    """
    report = ProofReport(seed=seed)
    state = {"last": None}

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
    @given(cases(features))
    def run(case: Case):
        report.examples += 1
        try:
            check_case(original, training, case, report)
        except ProofFailure as exc:
            state["last"] = exc.failure
            raise

    try:
        with _reproducible():
            run()
    except ProofFailure as exc:
        report.failure = exc.failure
    except HypothesisException as exc:  # pragma: no cover - flaky or unsatisfiable
        report.failure = Failure("hypothesis", str(exc), Case([]))
    return report
