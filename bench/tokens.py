"""Cost of the token-level check next to the character-level proof, side by side in one run.

For every golden family in templates/ (NAME.jinja / NAME_training.jinja) and each round, alternating:

(a) the character-level proof: ``tmplc.prove.check_case`` on the hypothesis conversations
    ``tmplc.strategies.cases(features)`` draws (seed 0), as ``tmplc.verify(original, training,
    examples=N)`` does;
(b) the same, plus the token check per drawn case: ``tmplc.tokens.check_case_tokens`` on the
    conversation and on its :func:`tmplc.tokens.plain` form (one render and one tokenization each),
    with the Qwen3 tokenizer loaded once;
(c) as (b), on the plain form only.

    python bench/tokens.py [--examples 100] [--rounds 3]

Prints per family the median time of (a), (b), (c) and (b)/(a), (c)/(a), then the median ratios over families
(target ≤ 1.5), and ``tmplc.verify`` itself for reference. docs/performance.md records it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def run(original: str, training: str, features, examples: int, tokenizer=None, forms: str = "both") -> int:
    from hypothesis import HealthCheck, given, seed, settings

    from tmplc.prove import ProofFailure, check_case
    from tmplc.strategies import cases
    from tmplc.tokens import RenderingMismatch, check_case_tokens, plain

    count = [0]

    @seed(0)
    @settings(max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cases(features))
    def body(case):
        count[0] += 1
        try:
            check_case(original, training, case)
        except ProofFailure:
            pass
        if tokenizer is not None:
            for c in ((case, plain(case)) if forms == "both" else (plain(case),)):
                try:
                    check_case_tokens(tokenizer, training, c)
                except RenderingMismatch:
                    raise
                except Exception:  # noqa: BLE001 - the template refuses the conversation
                    pass

    body()
    return count[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from real_tokenizers import get_tokenizer

    from tmplc.compiler import verify
    from tmplc.probes import detect_features
    from tmplc.prove import _reproducible

    tok = get_tokenizer("qwen3")
    names = sorted(p.name[: -len("_training.jinja")] for p in (REPO / "templates").glob("*_training.jinja"))
    ratios, plain_ratios = [], []
    print(f"{'family':20s} {'(a) chars':>10s} {'(b) +tokens':>12s} {'(c) +plain':>11s} {'b/a':>5s} {'c/a':>5s} {'verify()':>9s}")
    for name in names:
        original = (REPO / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
        training = (REPO / "templates" / f"{name}_training.jinja").read_text(encoding="utf-8")
        features = detect_features(original)
        a_times, b_times, c_times, v_times = [], [], [], []
        with _reproducible():
            run(original, training, features, 5, tok)  # warm caches (compiled templates, tokenizer)
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                run(original, training, features, args.examples)
                a_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                run(original, training, features, args.examples, tok)
                b_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                run(original, training, features, args.examples, tok, forms="plain")
                c_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        verify(original, training, examples=args.examples)
        v_times.append(time.perf_counter() - t0)
        a, b, c = statistics.median(a_times), statistics.median(b_times), statistics.median(c_times)
        ratios.append(b / a)
        plain_ratios.append(c / a)
        print(f"{name:20s} {a:9.2f}s {b:11.2f}s {c:10.2f}s {b / a:5.2f} {c / a:5.2f} {v_times[0]:8.2f}s", flush=True)
    print(f"median ratio (b)/(a) over {len(ratios)} families: {statistics.median(ratios):.2f} "
          f"(max {max(ratios):.2f}); (c)/(a): {statistics.median(plain_ratios):.2f} (max {max(plain_ratios):.2f}); "
          "target <= 1.5")


if __name__ == "__main__":
    main()
