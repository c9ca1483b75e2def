"""augment's proof against its rendering floor, per golden family, side by side in one run.

    python bench/augment.py [--examples 200] [--rounds 3] [NAME...]

For each original in templates/ (NAME.jinja with a NAME_training.jinja beside it), three
timings in the same process, rounds alternating, minimum per family:

* render floor: the conversations the proof draws (same strategy, seed and example count), each
  prefix rendered with and without the generation prompt through the compiled template, once
  (no oracle, no comparison; drawing excluded);
* proof floor: the same, with the conversations drawn by hypothesis inside the loop, as any proof
  over that many examples must (``@given`` with the proof's settings, rendering in the body);
* augment: ``tmplc.augment(source, examples=N)`` (analysis, locate, rewrite, proof), i.e. what
  ``tmplc augment --check`` does.

Prints both ratios per family and their medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hseed

from tmplc import augment
from tmplc.analysed import Analysed
from tmplc.strategies import cases

REPO = Path(__file__).resolve().parent.parent


def drawn(source: str, examples: int, seed: int = 0) -> list:
    """The conversations the proof draws for ``source`` (same strategy, settings and seed)."""
    a = Analysed(source)
    out = []

    @hseed(seed)
    @settings(max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cases(a.features))
    def run(case):
        out.append(case)

    run()
    return out


def render_all(compiled, case) -> None:
    for k in range(1, len(case.messages) + 1):
        for agp in (False, True):
            try:
                case.render(compiled, case.messages[:k], agp)
            except Exception:  # noqa: BLE001 - a raising template costs its render too
                pass


def floor(source: str, conversations: list) -> float:
    compiled = Analysed(source).compiled
    t0 = time.perf_counter()
    for case in conversations:
        render_all(compiled, case)
    return time.perf_counter() - t0


def proof_floor(source: str, examples: int, seed: int = 0) -> float:
    a = Analysed(source)
    compiled, strategy = a.compiled, cases(a.features)

    @hseed(seed)
    @settings(max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        render_all(compiled, case)

    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    paths = sorted(p for p in (REPO / "templates").glob("*.jinja") if not p.stem.endswith("_training"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names]
    ratios, proof_ratios = [], []
    print(f"{'family':20s} {'render s':>9s} {'proof s':>8s} {'augment s':>10s} {'/render':>8s} {'/proof':>7s}")
    for path in paths:
        source = path.read_text(encoding="utf-8")
        conversations = drawn(source, args.examples)
        f_times, p_times, a_times = [], [], []
        for _ in range(args.rounds):
            f_times.append(floor(source, conversations))
            p_times.append(proof_floor(source, args.examples))
            t0 = time.perf_counter()
            result = augment(source, path.name, examples=args.examples)
            a_times.append(time.perf_counter() - t0)
            assert result.ok, (path.name, result.status)
        f, pf, a = min(f_times), min(p_times), min(a_times)
        ratios.append(a / f)
        proof_ratios.append(a / pf)
        print(f"{path.stem:20s} {f:9.3f} {pf:8.3f} {a:10.3f} {a / f:8.2f} {a / pf:7.2f}", flush=True)
    print(f"median over {len(ratios)} families: augment/render floor {statistics.median(ratios):.2f}, "
          f"augment/proof floor {statistics.median(proof_ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
