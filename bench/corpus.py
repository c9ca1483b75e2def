"""Per-template time by stage (parse, locate, rewrite, proof) over a corpus, and the total.

    python bench/corpus.py [DIR] [--examples N]

Prints one line per template and the total and median; docs/coverage.md quotes the median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from tmplc import corpus

STAGES = ("parse", "locate", "rewrite", "proof")


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("directory", nargs="?", default=str(here / "tests" / "corpus"))
    ap.add_argument("--examples", type=int, default=25)
    args = ap.parse_args(argv)
    rows = corpus.run(Path(args.directory), examples=args.examples)
    print(f"{'template':70s} {'outcome':12s} " + " ".join(f"{s:>7s}" for s in STAGES) + "   total")
    for r in rows:
        t = r["seconds"]
        print(f"{r['file'][:70]:70s} {r['outcome']:12s} " + " ".join(f"{t.get(s, 0):7.3f}" for s in STAGES)
              + f" {t['total']:7.3f}")
    totals = [r["seconds"]["total"] for r in rows]
    for s in STAGES:
        print(f"total {s}: {sum(r['seconds'].get(s, 0) for r in rows):.2f}s")
    print(f"templates: {len(rows)}  total: {sum(totals):.2f}s  median: {statistics.median(totals):.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
