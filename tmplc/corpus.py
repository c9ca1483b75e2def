"""Run ``augment --check`` over a directory of templates and tabulate the outcomes.

Used by ``tmplc corpus DIR``, by the corpus test and by ``bench/corpus.py``;
``docs/coverage.md`` is generated from :func:`markdown`.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .compiler import Unsupported, augment
from .errors import InputError
from .reasons import REASONS, Reason
from .render import has_markers


def family_map(directory: Path) -> dict[str, str]:
    """``file → family`` from the directory's ``MANIFEST.tsv`` (empty without one)."""
    manifest = directory / "MANIFEST.tsv"
    if not manifest.exists():
        return {}
    with manifest.open(encoding="utf-8") as fh:
        return {row["file"]: row["family"] for row in csv.DictReader(fh, delimiter="\t")}


def row(path: Path, examples: int = 40, seed: int = 0, family: str = "") -> dict:
    """The outcome of ``augment --check`` on one template file, as a report row (see :func:`run`)."""
    text = path.read_text(encoding="utf-8")
    kind = "training" if path.stem.endswith("_training") else ("has-markers" if has_markers(text) else "original")
    t0 = time.perf_counter()
    out = {"file": path.name, "family": family.replace("|", "/"), "kind": kind}
    try:
        result = augment(text, path.name, examples=examples, seed=seed)
    except InputError as exc:
        return {**out, "outcome": "bad-input", "reason": "bad-input", "message": str(exc), "examples": 0, "turns": 0,
                "counterexample": None, "seconds": {"total": round(time.perf_counter() - t0, 3)}}
    report = result.report
    counterexample = None
    if isinstance(result, Unsupported) and result.counterexample is not None and result.counterexample.case.messages:
        case = result.counterexample.case
        counterexample = {"messages": case.messages, "tools": bool(case.tools), "kwargs": case.kwargs,
                          "add_generation_prompt": case.add_generation_prompt}
    return {
        **out, "outcome": result.status,
        "reason": str(result.reason) if isinstance(result, Unsupported) else None,
        "message": result.message if isinstance(result, Unsupported) else "",
        "examples": report.examples if report else 0, "turns": report.turns_checked if report else 0,
        "counterexample": counterexample,
        "seconds": {**{k: round(v, 3) for k, v in result.timings.items()}, "total": round(time.perf_counter() - t0, 3)},
    }


def _row(args: tuple[Path, int, int, str]) -> dict:
    return row(*args)


def run(paths: Path | list[Path], examples: int = 40, seed: int = 0, jobs: int | None = 1) -> list[dict]:
    """Outcome of every template: one dict per file with ``file``, ``family``, ``kind`` (original /
    training / has-markers), ``outcome`` (proved, verified, unsupported, bad-input), ``reason``,
    ``message``, ``examples``, ``turns`` (assistant turns checked), ``counterexample`` and
    ``seconds`` per stage.

    Args:
        paths: a directory (its ``*.jinja``, families from its ``MANIFEST.tsv``) or a list of files.
        jobs: worker processes (None: one per core); rows come back in input order either way.
    """
    if isinstance(paths, Path):
        files, families = sorted(paths.glob("*.jinja")), family_map(paths)
    else:
        files = list(paths)
        families = {}
        for directory in {f.parent for f in files}:
            families.update(family_map(directory))
    tasks = [(f, examples, seed, families.get(f.name, "")) for f in files]
    workers = (os.cpu_count() or 1) if jobs is None else jobs
    if workers <= 1 or len(tasks) <= 1:
        return [_row(t) for t in tasks]
    # Largest templates first (their size stands in for their cost), so no worker is left with a
    # long one at the end while the others idle; rows are put back in input order. Workers are
    # started afresh ("spawn"), not forked from the caller: a forked worker runs at the caller's
    # Python stack depth, and at some depths (under pytest) CPython 3.11 allocates and frees a
    # frame stack chunk on nearly every call (cpython gh-142183: some 40 s of system time for the
    # corpus test).
    order = sorted(range(len(tasks)), key=lambda k: -_size(tasks[k][0]))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(_row, [tasks[k] for k in order], chunksize=1))
    rows: list[dict] = [{}] * len(tasks)
    for k, row in zip(order, done):
        rows[k] = row
    return rows


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def summary(rows: list[dict]) -> dict:
    originals = [r for r in rows if r["kind"] == "original"]
    proved = [r for r in originals if r["outcome"] == "proved"]
    internal = [r for r in rows if r["outcome"] == "unsupported" and r["reason"] == Reason.INTERNAL_ERROR]
    return {"originals": len(originals), "proved": len(proved), "internal_errors": len(internal),
            "median_seconds": statistics.median([r["seconds"]["total"] for r in rows]) if rows else 0.0}


def markdown(rows: list[dict], examples: int, seed: int) -> str:
    s = summary(rows)
    out = [
        "# Corpus coverage",
        "",
        "Generated by `tmplc corpus ../shared/corpus --markdown docs/coverage.md` "
        f"(`augment --check`, {examples} proof examples, seed {seed}); do not edit by hand.",
        "",
        f"Originals (no `*_training.jinja`, no existing markers): **{s['proved']} of {s['originals']} proved**; "
        f"internal errors: {s['internal_errors']}; median seconds per template: {s['median_seconds']:.2f}.",
        "",
        "Reason codes: " + "; ".join(f"`{k}` — {v}" for k, v in REASONS.items()) + ".",
        "",
        "| template | family | kind | outcome | reason | examples | turns checked |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| `{r['file']}` | {r['family']} | {r['kind']} | {r['outcome']} | {r['reason'] or ''} | {r['examples']} | {r['turns']} |")
    refused = [r for r in rows if r["kind"] == "original" and r["outcome"] == "unsupported"]
    if refused:
        out += ["", "## Refused originals", "",
                "Each with its reason code, the template node or turn concerned, and the roles of the minimal "
                "conversation that shows it (`tmplc augment --check FILE` prints the conversation).", "",
                "| template | reason | where | minimal conversation |", "|---|---|---|---|"]
        for r in refused:
            cex = r.get("counterexample") or {}
            roles = " → ".join(m.get("role", "?") + ("+tool_calls" if m.get("tool_calls") else "")
                               for m in cex.get("messages", []))
            where = (r["message"] or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{r['file']}` | {r['reason']} | {where} | {roles} |")
    return "\n".join(out) + "\n"
