"""Command line: ``tmplc augment PATH... [-o OUT] [--examples N] [--seed S] [--timeout T] [--check]``.

Exit codes: 0 all written (or verified with ``--check``); 1 a proof failed, a template is
unsupported (a reason code: ``render-timeout``, ``too-deeply-nested``, ``internal-error``...);
2 bad input or an unusable output path, reported as one line ``path:line:col: message``.
All or nothing: outputs are written only when every template passed; the inputs are never
modified. No traceback reaches the user (``--verbose`` shows the one of an internal error).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from pathlib import Path

import click

from . import rules as catalogue
from .analysed import Analysed, analyse
from .containers import Source, atomic_write, plan_outputs, read_sources, write_all
from .errors import InputError, NestingError, NotProved, OutputError, one_line
from .lint import discover, format_github, format_json, format_text, lint_source, source_of
from .tokens import load_tokenizer  # transformers is imported inside it, only when a tokenizer is loaded

DEFAULT_TIMEOUT = 120.0  # seconds of rendering per template


def _print_failure(console, label: str, result, verbose: bool) -> None:
    from rich.markup import escape  # rich only on the augment path

    console.print(f"[bold red]{escape(one_line(label))}: unsupported[/] " + escape(f"[{result.reason}] {result.message}"),
                  markup=True, highlight=False, soft_wrap=True)
    if result.reason == "internal-error":
        console.print("this is a bug in tmplc: please report it with the template"
                      + ("" if verbose else " (--verbose shows the traceback)"), highlight=False)
        if verbose:
            console.print(result.trace, markup=False, highlight=False)
    f = result.counterexample
    if f is not None and f.case is not None and f.case.messages:
        console.print("minimal conversation:" if f.kind != "budget" else "conversation being rendered:",
                      highlight=False)
        console.print(f.case.describe(), markup=False, highlight=False)
        if f.detail and f.kind == "mask":
            console.print(f.detail, markup=False, highlight=False)


def contract(command):
    """Run a command under the CLI contract: :class:`InputError`/:class:`OutputError` exit 2 with
    their one line, :class:`NotProved` exits 1 with its one line; any other exception exits 1 as
    ``internal-error`` with a hint to report it (its traceback only with ``--verbose`` or
    ``TMPLC_TRACEBACK=1``)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (InputError, OutputError) as exc:
            click.echo(str(exc), err=True)
            sys.exit(2)
        except NotProved as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
        except (click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the contract: no traceback
            if kwargs.get("verbose") or os.environ.get("TMPLC_TRACEBACK"):
                traceback.print_exc()
            click.echo(one_line(f"tmplc: internal-error: {type(exc).__name__}: {exc}")
                       + " (a bug in tmplc: please report it with the input)", err=True)
            sys.exit(1)

    return run


@click.group()
@click.version_option(package_name="tmplc")
def main() -> None:
    """tmplc: compile chat templates into proven training templates."""


def _read_all(paths) -> list[tuple[Source, Analysed | str]]:
    """Every template of every path, each analysed (bad input ends the run before any proof; the
    analysis is handed to augment, not redone). Raises :class:`InputError`."""
    sources: list[Source] = []
    for path in paths:
        sources += read_sources(Path(path))
    out: list[tuple[Source, Analysed | str]] = []
    for src in sources:
        name = src.label if src.name else src.path.name
        try:
            out.append((src, analyse(src.text, name)))
        except NestingError:
            out.append((src, src.text))  # not bad input: augment reports too-deeply-nested (exit 1)
        except InputError as exc:
            raise exc.with_path(src.label) from None
    return out


def _examples(result) -> int:
    return result.report.examples if result.report else 0


def _record(src: Source, result) -> dict:
    failed = result.status == "unsupported"
    return {"path": src.label, "status": result.status, "reason": result.reason if failed else None,
            "message": result.message if failed else "",
            "examples": result.report.examples if result.report else 0, "timings": result.timings, "written": None,
            "notes": list(result.notes), "change": getattr(result, "change", ""),
            "tokens": _token_record(result.report) if result.report and result.report.token_renderings else None}


def _token_record(report) -> dict:
    """The token-level part of a JSON record: the mapping used and the straddling tokens (counts in tokens)."""
    from .tokens import transformers_version

    return {"mapping": report.mapping, "transformers": transformers_version(), "renderings": report.token_renderings,
            "straddling": report.straddling, "straddling_trained": report.straddling_trained,
            "straddling_detail": report.straddling_detail, "open_end": report.open_end}


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out", type=click.Path(),
              help="Output file, or directory (an existing one, or a path ending in '/').")
@click.option("--examples", default=200, show_default=True, help="Hypothesis examples in the proof.")
@click.option("--seed", default=0, show_default=True, help="Hypothesis seed (same seed, same file).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds of rendering per template; a template over it is unsupported [render-timeout].")
@click.option("--check", is_flag=True, help="Prove only; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per template.")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(path_type=Path),
              help="A tokenizer folder, tokenizer.json or tokenizer_config.json: also prove the token-level "
                   "masks. Default: the tokenizer beside an input tokenizer_config.json, if any.")
@click.option("--sanitize-control-tokens", is_flag=True,
              help="With a tokenizer: check tokens as apply_chat_template(..., sanitize_control_tokens=True) "
                   "tokenizes (control tokens in messages, tools and kwargs become plain text).")
@click.option("--verbose", is_flag=True, help="Show the traceback of an internal error.")
@click.option("--append-stop", is_flag=True,
              help="Where the template writes no end-of-turn text, append the next message's marker after a "
                   "final assistant turn (TRL PR #6044; a declared rendering change).")
@click.option("--policy", type=click.Choice(["as-rendered", "last-turn"]), default="as-rendered", show_default=True,
              help="Which assistant turns are trained: every one as rendered, or only a final one.")
@click.option("--prefix-preserving", is_flag=True,
              help="Render history assistant turns as the model generated them (reasoning kept, the final stop), "
                   "a declared rendering change shown as a diff, proved prefix-preserving.")
@contract
def augment(paths, out, examples, seed, timeout, check, as_json, tokenizer_path, sanitize_control_tokens, verbose,
            append_stop, policy, prefix_preserving) -> None:
    """Insert {% generation %} markers, prove them, and write NAME_training.jinja.

    All or nothing: files are written only when every template passed.
    """
    from rich.console import Console  # rich and the compiler (hypothesis) stay off the lint path

    from .compiler import augment as run

    console = Console(highlight=False, soft_wrap=True)
    if append_stop and prefix_preserving:
        raise click.UsageError("--append-stop and --prefix-preserving cannot be combined")
    analysed = _read_all(paths)
    sources = [src for src, _ in analysed]
    dests = [None] * len(sources) if check else plan_outputs(sources, out)
    tokenizers = _tokenizers(sources, tokenizer_path)
    _check_sanitize(sanitize_control_tokens, tokenizers.values())
    records, pending = [], []
    for (src, template), dest in zip(analysed, dests):
        tokenizer = tokenizers.get(src.path)
        result = run(template, src.label if src.name else src.path.name, examples=examples, seed=seed,
                     timeout=timeout, tokenizer=tokenizer, append_stop=append_stop, policy=policy,
                     prefix_preserving=prefix_preserving,
                     sanitize_control_tokens=sanitize_control_tokens and tokenizer is not None)
        records.append(_record(src, result))
        if result.status == "unsupported":
            if not as_json:
                _print_failure(console, src.label, result, verbose)
            continue
        if not as_json:
            what = ("markers verified" if result.status == "verified" else
                    "proved (not written: --check)" if check else "proved")
            click.echo(one_line(f"{src.label}: {what}; {_examples(result)} examples, seed {seed}"
                                + (_token_summary(result.report) if tokenizer is not None else "")))
            for note in result.notes:
                click.echo(one_line(f"{src.label}: {note}"))
            change = getattr(result, "change", "")
            if change:
                click.echo(f"{one_line(src.label)}: rendering changed (--prefix-preserving): history assistant turns "
                           "rendered as generated; on one conversation:")
                click.echo(change, nl=not change.endswith("\n"))
        if result.status == "proved" and not check:
            pending.append((len(records) - 1, dest, result.text))
    failed = sum(r["status"] == "unsupported" for r in records)
    if failed == 0 and pending:
        _write(pending, records, as_json)
    elif failed and pending and not as_json:
        click.echo(f"nothing written: {failed} of {len(records)} templates failed (all or nothing)")
    for r in records if as_json else ():
        click.echo(json.dumps(r))
    sys.exit(1 if failed else 0)


def _tokenizers(sources: list[Source], explicit: Path | None) -> dict[Path, object]:
    """The tokenizer of each input: ``--tokenizer`` for all, else the one saved beside an input
    ``tokenizer_config.json`` (a model folder). Loads transformers only when there is one.

    Raises:
        InputError: a tokenizer that cannot be loaded.
    """
    if explicit is not None:
        tok = load_tokenizer(explicit)
        return {src.path: tok for src in sources}
    out: dict[Path, object] = {}
    for src in sources:
        if src.path.name == "tokenizer_config.json" and (src.path.parent / "tokenizer.json").is_file() \
                and src.path not in out:
            out[src.path] = load_tokenizer(src.path)
    return out


def _check_sanitize(sanitize: bool, tokenizers) -> None:
    """``--sanitize-control-tokens`` needs a tokenizer and a transformers that has the option."""
    if not sanitize:
        return
    from .tokens import SanitizeUnsupported, sanitized_inputs

    if not tokenizers:
        raise click.UsageError("--sanitize-control-tokens needs a tokenizer (--tokenizer)")
    try:
        for tok in tokenizers:
            sanitized_inputs(tok, "", [])
    except SanitizeUnsupported as exc:
        raise click.UsageError(f"--sanitize-control-tokens: {exc}") from None


def _token_summary(report) -> str:
    """``; tokens: … (… mapping, transformers X)`` for the one-line result: the span -> token
    mapping used, renderings checked, straddling tokens (a warning), the stop tokens seen (special
    or plain text, TRL's stop check)."""
    from .tokens import describe_mapping

    text = f"; tokens: {report.token_renderings} renderings, 0 lost, 0 added ({describe_mapping(report.mapping or None)})"
    if report.straddling:
        text += (f"; warning: {report.straddling} tokens straddle a span edge, {report.straddling_trained} of them "
                 f"trained (first: {report.straddling_detail})")
    if report.open_end:
        text += (f"; warning: {report.open_end} tokens of a final turn's last character are not masked (the template "
                 "writes nothing after that turn and the char_to_token mapping maps a span's end to its last "
                 "character's first token; --append-stop ends the turn with its stop)")
    if report.special_stops:
        text += f"; stop tokens (added vocabulary): {', '.join(sorted(report.special_stops))}"
    if report.plain_text_stops:
        text += f"; plain-text stops: {', '.join(map(repr, sorted(report.plain_text_stops)))}"
    return text


def _write(pending: list, records: list[dict], as_json: bool) -> None:
    """Write every proved template (:func:`tmplc.containers.write_all`); raises OutputError."""
    try:
        write_all([(dest, text) for _, dest, text in pending])
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror or exc} (nothing written)",
                          str(exc.filename or pending[0][1])) from None
    for i, dest, _ in pending:
        records[i]["written"] = str(dest)
        if not as_json:
            click.echo(one_line(f"wrote {dest}"))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--training", is_flag=True, help="Treat every template as a training template.")
@click.option("--source", "source_path", type=click.Path(path_type=Path),
              help="The original template the training templates were made from.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True)
@click.option("--select", multiple=True, help="Only these codes or prefixes (repeatable, comma lists allowed).")
@click.option("--ignore", multiple=True, help="Skip these codes or prefixes.")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(path_type=Path),
              help="A tokenizer folder, tokenizer.json or tokenizer_config.json: enables the token rules (TMPL012).")
@click.option("--sanitize-control-tokens", is_flag=True,
              help="With --tokenizer: the token rules tokenize as apply_chat_template(..., sanitize_control_tokens=True).")
@contract
def lint(paths, training, source_path, fmt, select, ignore, tokenizer_path, sanitize_control_tokens) -> None:
    """Check templates: markers present, balanced, visible, masking what the model generates.

    Exit 0: no errors (warnings are printed); 1: errors found; 2: usage or unreadable input.
    """
    split = lambda vals: tuple(v.strip() for val in vals for v in val.split(",") if v.strip())  # noqa: E731
    chosen = catalogue.select(split(select), split(ignore))
    if source_path is not None:
        read_sources(source_path)  # InputError (exit 2): missing, a directory, unreadable, not UTF-8
    tokenizer = None
    if tokenizer_path is not None:
        tokenizer = load_tokenizer(tokenizer_path)
    _check_sanitize(sanitize_control_tokens, [tokenizer] if tokenizer is not None else [])
    diags, texts = [], {}
    for path in discover(list(paths)):
        for src in read_sources(path):
            original, label = source_of(src.path, src.text, source_path)
            texts[src.label] = src.text
            diags += lint_source(src.text, src.label, chosen, training or None, original, label, tokenizer,
                                 sanitize_control_tokens)
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
    for r in catalogue.RULES:
        if r.code == code.upper() or r.name == code:
            click.echo(f"{r.code} {r.name}\n\n{r.doc()}")
            return
    click.echo(f"unknown rule {code}", err=True)
    sys.exit(2)


@main.command()
@click.argument("template", type=click.Path(path_type=Path))
@click.option("--conversation", type=click.Path(path_type=Path),
              help="A .json conversation ({messages, tools, kwargs...}) or .jsonl (one per line).")
@click.option("--html", "html_out", type=click.Path(path_type=Path), help="Also write a self-contained HTML page.")
@click.option("--examples", default=50, show_default=True, help="Proof examples when TEMPLATE is an original.")
@click.option("--seed", default=0, show_default=True)
@contract
def show(template, conversation, html_out, examples, seed) -> None:
    """Render a conversation and show the assistant mask (masked text, prompt cue, stop token)."""
    from .show import run_show  # imports the compiler (hypothesis): off the lint path

    run_show(template, conversation, html_out, examples, seed)


@main.group()
def export() -> None:
    """Put a proved training template upstream: a model folder (hub) or a TRL checkout (trl)."""


@export.command("hub")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--examples", default=200, show_default=True, help="Hypothesis examples in the proof.")
@click.option("--seed", default=0, show_default=True)
@contract
def export_hub(model_dir, examples, seed) -> None:
    """Write MODEL_DIR/additional_chat_templates/training.jinja; the default template is untouched."""
    from .export import run_export_hub  # imports the compiler (hypothesis)

    run_export_hub(model_dir, examples, seed)


@export.command("trl")
@click.argument("checkout", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="TRL template name: writes NAME.jinja and NAME_training.jinja.")
@click.option("--template", "template", required=True, type=click.Path(path_type=Path),
              help="The original template (.jinja, chat_template.jinja or tokenizer_config.json).")
@click.option("--pr-out", type=click.Path(path_type=Path), help="PR description (default: ./NAME_PR.md).")
@click.option("--examples", default=200, show_default=True)
@click.option("--seed", default=0, show_default=True)
@contract
def export_trl(checkout, name, template, pr_out, examples, seed) -> None:
    """Write trl/chat_templates/NAME.jinja + NAME_training.jinja and a PR description."""
    from .export import run_export_trl  # imports the compiler (hypothesis)

    run_export_trl(checkout, name, template, pr_out, examples, seed)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--examples", default=40, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--report", type=click.Path(path_type=Path), help="Write the machine-readable JSON report here.")
@click.option("--markdown", type=click.Path(path_type=Path), help="Write the coverage table (docs/coverage.md) here.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes [default: one per core].")
@contract
def corpus(directory, examples, seed, report, markdown, jobs) -> None:
    """Run augment --check over every *.jinja in DIRECTORY and print the outcome counts."""
    from . import corpus as c  # imports the compiler (hypothesis)

    if not directory.is_dir():
        raise InputError("not a directory" if directory.exists() else "no such directory", str(directory), 0, 0)

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
