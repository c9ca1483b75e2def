"""Which goldens lose or add tokens: the measurement behind the xfail lists in tests/.

For every templates/NAME_training.jinja, hypothesis conversations with multi-byte edges
(``cases(features, edge_texts())``, seed 0), each checked in plain and sentinel form with
``tmplc.tokens.check_tokens`` (the real ``apply_chat_template``):

    python bench/token_goldens.py [--tokenizer qwen3|deepseekv3|llama3] [--examples 60]

Prints per golden: renderings checked, renderings with lost/added tokens, total lost, added and
straddling tokens, renderings whose stop token is plain text, and the first problem.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def sweep(tok, original: str, training: str, examples: int) -> tuple[dict, str]:
    """Token reports of ``examples`` conversations (plain and sentinel forms): counts and the first problem."""
    from hypothesis import HealthCheck, given, seed, settings

    from tmplc.probes import detect_features
    from tmplc.strategies import cases, edge_texts
    from tmplc.tokens import RenderingMismatch, check_tokens, plain

    stats = {"checked": 0, "failing": 0, "lost": 0, "added": 0, "straddling": 0, "straddling_trained": 0, "plain_stop": 0}
    first = [""]

    @seed(0)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cases(detect_features(original), edge_texts()))
    def run(case):
        for c in (plain(case), case):
            try:
                r = check_tokens(tok, training, c)
            except RenderingMismatch as exc:
                first[0] = first[0] or f"MISMATCH {exc}"
                continue
            except Exception:  # noqa: BLE001 - the template refuses the conversation
                continue
            stats["checked"] += 1
            stats["lost"] += r.lost
            stats["added"] += r.added
            stats["straddling"] += r.straddling
            stats["straddling_trained"] += r.straddling_trained
            stats["plain_stop"] += r.stop_token_trained is False
            if not r.ok:
                stats["failing"] += 1
                first[0] = first[0] or r.detail

    run()
    return stats, first[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default="qwen3")
    ap.add_argument("--examples", type=int, default=60)
    args = ap.parse_args()

    from real_tokenizers import get_tokenizer

    from tmplc.tokens import describe_mapping

    tok = get_tokenizer(args.tokenizer)
    print(f"span -> token mapping: {describe_mapping()}", flush=True)
    names = sorted(p.name[: -len("_training.jinja")] for p in (REPO / "templates").glob("*_training.jinja"))
    for name in names:
        original = (REPO / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
        training = (REPO / "templates" / f"{name}_training.jinja").read_text(encoding="utf-8")
        t0 = time.perf_counter()
        stats, first = sweep(tok, original, training, args.examples)
        print(f"{name:20s} {time.perf_counter() - t0:5.1f}s " + " ".join(f"{k}={v}" for k, v in stats.items())
              + (f"\n    {first}" if first else ""), flush=True)


if __name__ == "__main__":
    main()
