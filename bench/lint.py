"""Lint speed against the floor any Jinja-aware linter pays, alternating in one run.

(a) `tmplc lint` (default rules) over 50 corpus templates in one process;
(b) one `python` process that imports jinja2, lark and click and compiles the same 50 files
    with jinja2 (`Environment.from_string`, with `loopcontrols` so chat templates compile).

    python bench/lint.py [--rounds 7]

Prints the median wall time of each and the ratio (a)/(b); docs/performance.md records it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

FLOOR = (
    "import sys, jinja2, jinja2.ext, lark, click\n"
    "env = jinja2.Environment(extensions=[jinja2.ext.loopcontrols])\n"
    "for p in sys.argv[1:]:\n"
    "    env.from_string(open(p, encoding='utf-8').read())\n"
)


def files(corpus: Path) -> list[str]:
    marker = re.compile(r"\{%-?\s*generation\s*-?%\}")  # plain jinja2 cannot compile markers
    chosen = [p for p in sorted(corpus.glob("*.jinja")) if not marker.search(p.read_text(encoding="utf-8"))]
    return [str(p) for p in chosen[:50]]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(here / "tests" / "corpus"))
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    paths = files(Path(args.corpus))
    a, b = [], []
    for _ in range(args.rounds):
        a.append(timed([sys.executable, "-m", "tmplc", "lint", *paths]))
        b.append(timed([sys.executable, "-c", FLOOR, *paths]))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"templates: {len(paths)}  rounds: {args.rounds}")
    print(f"(a) tmplc lint:           median {ma:.3f}s  (min {min(a):.3f}s)")
    print(f"(b) jinja2 compile floor: median {mb:.3f}s  (min {min(b):.3f}s)")
    print(f"ratio (a)/(b): {ma / mb:.2f}  (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
