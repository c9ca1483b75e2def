"""Command line: ``tmplc augment PATH... [-o OUT] [--examples N] [--seed S] [--check]``.

Exit codes: 0 all written (or verified with ``--check``); 1 a proof failed or a template is
unsupported; 2 bad input (missing, a directory, non-UTF-8, malformed Jinja), reported as one
line ``path:line:col: message``. Nothing is written unless its proof passed; the original is
never modified.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .containers import atomic_write, output_path, read_sources
from .errors import InputError


def _print_failure(console, label: str, result, verbose: bool) -> None:
    from rich.markup import escape  # rich only on the augment path

    console.print(f"[bold red]{escape(label)}: unsupported[/] " + escape(f"[{result.reason}] {result.message}"),
                  markup=True, highlight=False, soft_wrap=True)
    if result.reason == "internal-error":
        console.print("this is a bug in tmplc: please report it with the template"
                      + ("" if verbose else " (--verbose shows the traceback)"), highlight=False)
        if verbose:
            console.print(result.trace, markup=False, highlight=False)
    f = result.counterexample
    if f is not None and f.case is not None and f.case.messages:
        console.print("minimal conversation:", highlight=False)
        console.print(f.case.describe(), markup=False, highlight=False)
        if f.detail and f.kind == "mask":
            console.print(f.detail, markup=False, highlight=False)


@click.group()
@click.version_option(package_name="tmplc")
def main() -> None:
    """tmplc: compile chat templates into proven training templates."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), help="Output file or directory.")
@click.option("--examples", default=200, show_default=True, help="Hypothesis examples in the proof.")
@click.option("--seed", default=0, show_default=True, help="Hypothesis seed (same seed, same file).")
@click.option("--check", is_flag=True, help="Prove only; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per template.")
@click.option("--verbose", is_flag=True, help="Show the traceback of an internal error.")
@click.option("--append-stop", is_flag=True,
              help="Where the template writes no end-of-turn text, append the next message's marker after a "
                   "final assistant turn (TRL PR #6044; a declared rendering change).")
@click.option("--policy", type=click.Choice(["as-rendered", "last-turn"]), default="as-rendered", show_default=True,
              help="Which assistant turns are trained: every one as rendered, or only a final one.")
def augment(paths, out, examples, seed, check, as_json, verbose, append_stop, policy) -> None:
    """Insert {% generation %} markers, prove them, and write NAME_training.jinja."""
    from rich.console import Console  # rich and the compiler (hypothesis) stay off the lint path

    from .compiler import augment as run

    console = Console(highlight=False, soft_wrap=True)
    status = 0
    sources = []
    for path in paths:
        try:
            sources += read_sources(path)
        except InputError as exc:
            click.echo(str(exc), err=True)
            sys.exit(2)
    if out is not None and len(sources) > 1 and not out.is_dir():
        click.echo(f"{out}:0:0: -o must be a directory when several templates are given", err=True)
        sys.exit(2)
    for src in sources:
        name = src.label if src.name else src.path.name
        try:
            result = run(src.text, name, examples=examples, seed=seed, append_stop=append_stop, policy=policy)
        except InputError as exc:
            click.echo(str(exc.with_path(src.label)), err=True)
            sys.exit(2)
        failed = result.status == "unsupported"
        record = {"path": src.label, "status": result.status, "reason": result.reason if failed else None,
                  "message": result.message if failed else "",
                  "examples": result.report.examples if result.report else 0, "timings": result.timings}
        if failed:
            status = max(status, 1)
            if as_json:
                click.echo(json.dumps(record))
            else:
                _print_failure(console, src.label, result, verbose)
            continue
        if result.status == "verified" or check:
            record["written"] = None
            if not as_json:
                what = "markers verified" if result.status == "verified" else "proved (not written: --check)"
                click.echo(f"{src.label}: {what}; {result.report.examples} examples, seed {seed}")
        else:
            dest = output_path(src, out)
            if dest.resolve() == src.path.resolve():
                click.echo(f"{dest}:0:0: refusing to overwrite the input", err=True)
                sys.exit(2)
            atomic_write(dest, result.text)
            record["written"] = str(dest)
            if not as_json:
                click.echo(f"{src.label}: proved on {result.report.examples} examples (seed {seed}); wrote {dest}")
        record["notes"] = list(result.notes)
        if not as_json:
            for note in result.notes:
                click.echo(f"{src.label}: {note}")
        if as_json:
            click.echo(json.dumps(record))
    sys.exit(status)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--training", is_flag=True, help="Treat every template as a training template.")
@click.option("--source", "source_path", type=click.Path(path_type=Path, dir_okay=False),
              help="The original template the training templates were made from.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True)
@click.option("--select", multiple=True, help="Only these codes or prefixes (repeatable, comma lists allowed).")
@click.option("--ignore", multiple=True, help="Skip these codes or prefixes.")
def lint(paths, training, source_path, fmt, select, ignore) -> None:
    """Check templates: markers present, balanced, visible, masking what the model generates.

    Exit 0: no errors (warnings are printed); 1: errors found; 2: usage or unreadable input.
    """
    from . import rules as catalogue  # the rule catalogue loads only for lint
    from .lint import discover, format_github, format_json, format_text, lint_source, source_of

    split = lambda vals: tuple(v.strip() for val in vals for v in val.split(",") if v.strip())  # noqa: E731
    chosen = catalogue.select(split(select), split(ignore))
    diags, texts = [], {}
    for path in discover(list(paths)):
        try:
            srcs = read_sources(path)
        except InputError as exc:
            click.echo(str(exc), err=True)
            sys.exit(2)
        for src in srcs:
            original, label = source_of(src.path, src.text, source_path)
            texts[src.label] = src.text
            diags += lint_source(src.text, src.label, chosen, training or None, original, label)
    if fmt == "json":
        click.echo(format_json(diags))
    elif fmt == "github":
        if diags:
            click.echo(format_github(diags))
    elif diags:
        click.echo(format_text(diags, texts))
    sys.exit(1 if any(d.severity == "error" for d in diags) else 0)


@main.command()
@click.argument("code")
def rule(code) -> None:
    """Print the documentation of a rule (TMPLnnn or its name)."""
    from .rules import RULES

    for r in RULES:
        if r.code == code.upper() or r.name == code:
            click.echo(f"{r.code} {r.name}\n\n{r.doc()}")
            return
    click.echo(f"unknown rule {code}", err=True)
    sys.exit(2)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--examples", default=40, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--report", type=click.Path(path_type=Path), help="Write the machine-readable JSON report here.")
@click.option("--markdown", type=click.Path(path_type=Path), help="Write the coverage table (docs/coverage.md) here.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes [default: one per core].")
def corpus(directory, examples, seed, report, markdown, jobs) -> None:
    """Run augment --check over every *.jinja in DIRECTORY and print the outcome counts."""
    from . import corpus as c  # imports the compiler (hypothesis)

    rows = c.run(directory, examples, seed, jobs)
    s = c.summary(rows)
    for r in rows:
        click.echo(f"{r['file']}: {r['outcome']}" + (f" [{r['reason']}]" if r["reason"] else ""))
    click.echo(f"proved {s['proved']} of {s['originals']} originals; internal errors: {s['internal_errors']}")
    if report:
        atomic_write(report, json.dumps({"summary": s, "rows": rows}, indent=1) + "\n")
    if markdown:
        atomic_write(markdown, c.markdown(rows, examples, seed))


if __name__ == "__main__":  # pragma: no cover
    main()
