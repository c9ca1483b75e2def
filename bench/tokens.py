"""The token-level proof next to the character-level proof, side by side in one run.

For every golden family in templates/ (NAME.jinja / NAME_training.jinja), rounds alternating:

(a) ``tmplc.verify(original, training, examples=N)``: the character-level proof;
(b) ``tmplc.verify(original, training, examples=N, tokenizer=qwen3)``: the same proof with the
    token-level check of the verification core (each conversation and its plain form tokenized
    with the real Qwen3 tokenizer, loaded once), drawing field bodies with multi-byte edges too.

    python bench/tokens.py [--examples 200] [--rounds 3] [NAME...]

Prints the minimum per family of (a), (b) and (b)/(a), then the median ratio over families
(target ≤ 1.5). docs/performance.md records it.
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


def main(argv=None) -> int:
    from real_tokenizers import PACKAGES, tokenizer_dir

    from tmplc import verify
    from tmplc.tokens import load_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    folder = tokenizer_dir("qwen3")
    if folder is None:
        print(f"needs the Qwen3 tokenizer: {PACKAGES['qwen3'][2]}")
        return 2
    tokenizer = load_tokenizer(folder)
    names = sorted(p.name[: -len("_training.jinja")] for p in (REPO / "templates").glob("*_training.jinja"))
    ratios = []
    print(f"{'family':20s} {'chars s':>8s} {'tokens s':>9s} {'ratio':>6s}")
    for name in args.names or names:
        original = (REPO / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
        training = (REPO / "templates" / f"{name}_training.jinja").read_text(encoding="utf-8")
        a_times, b_times = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            assert verify(original, training, examples=args.examples).ok, name
            a_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            report = verify(original, training, examples=args.examples, tokenizer=tokenizer)
            b_times.append(time.perf_counter() - t0)
            assert report.ok, (name, report.failure)
        a, b = min(a_times), min(b_times)
        ratios.append(b / a)
        print(f"{name:20s} {a:8.3f} {b:9.3f} {b / a:6.2f}", flush=True)
    print(f"median ratio token-level / character-level proof over {len(ratios)} families: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
