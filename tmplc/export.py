"""``tmplc export``: put a proved training template where upstream projects load it.

* :func:`export_hub` — a model folder: transformers (5.x, ``tokenization_utils_base``) loads every
  ``additional_chat_templates/NAME.jinja`` of a local folder as the named template ``NAME``
  (``apply_chat_template(..., chat_template="training")``), and ``chat_template.jinja`` as
  ``"default"``. Once any template *file* exists, the ``chat_template`` of
  ``tokenizer_config.json`` is ignored, so when the default lives only there it is copied,
  byte for byte, to ``chat_template.jinja`` (and other named entries of a list to
  ``additional_chat_templates/NAME.jinja``); the default template's text never changes.
* :func:`export_trl` — a TRL checkout: ``trl/chat_templates/NAME.jinja`` (the original, used by
  TRL for identity comparison) and ``NAME_training.jinja`` (the training template), plus a pull
  request description comparing them with any existing TRL template of that name.

A training template never becomes a default: inference engines built on minijinja (TGI,
mistral.rs) refuse ``{% generation %}`` ("unknown statement generation"); see rule TMPL013.
Nothing is written unless the proof passed; writes are atomic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .analysed import Analysed
from .compiler import Unsupported, augment
from .containers import read_sources, write_all
from .errors import InputError, NotProved, OutputError
from .prove import ProofReport
from .render import GENERATION_RE, has_markers
from .show import mark_text, mask_view, read_template, sample_case
from .verification import Outcome, Rendered, Renderings, check_renderings, mask_of, same_rendering

DEFAULT_FILE = "chat_template.jinja"
CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_DIR = "additional_chat_templates"  # transformers.utils.hub.CHAT_TEMPLATE_DIR
TRAINING_NAME = "training"
TRL_DIR = Path("trl") / "chat_templates"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


@dataclass
class Export:
    """The outcome of an export: ``files`` maps each path to write to its text (already written
    when :attr:`written` is true); ``unchanged`` lists files that already had those bytes."""

    files: dict[Path, str] = field(default_factory=dict)
    unchanged: list[Path] = field(default_factory=list)
    report: ProofReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[Path]:
        return [p for p in self.files if p not in self.unchanged]


def _prove(source: str, name: str, label: str, examples: int, seed: int):
    """Augment and prove ``source`` (``name`` goes in the written header, ``label`` in errors).

    Raises:
        InputError: malformed Jinja (exit 2). NotProved: no proved placement (exit 1).
    """
    try:
        result = augment(source, name, examples=examples, seed=seed)
    except InputError as exc:
        raise exc.with_path(label) from None
    if isinstance(result, Unsupported):
        raise NotProved(label, result.reason, result.message.split("\n")[0])
    return result


def _refuse_markers(text: str, label: str) -> None:
    m = GENERATION_RE.search(text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        raise InputError("the default template already has {% generation %} markers; inference engines on "
                         "minijinja fail to load it (TMPL013): restore the original first", label, line, col)


def _same(path: Path, text: str) -> bool:
    try:
        return path.is_file() and path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _check_writable(paths) -> None:
    """Refuse before writing anything: a target that is a directory, or under a file."""
    for path in paths:
        if path.is_dir():
            raise OutputError("is a directory (expected a file to write)", str(path))
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"cannot write: {parent} is not a directory", str(path))
                break


def _commit(export: Export) -> Export:
    """Write the files that change, all or nothing (:func:`tmplc.containers.write_all`).

    Raises:
        OutputError: a target cannot be written (nothing is written then).
    """
    _check_writable(export.files)
    for path, text in export.files.items():
        if _same(path, text):
            export.unchanged.append(path)
    try:
        for path in {p.parent for p in export.changed}:
            path.mkdir(parents=True, exist_ok=True)
        write_all([(path, export.files[path]) for path in export.changed])
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror or exc} (nothing written)",
                          str(exc.filename or next(iter(export.files), ""))) from None
    return export


# --------------------------------------------------------------------------- hub

def model_templates(model_dir: Path) -> tuple[str, str, dict[Path, str]]:
    """The default template of a model folder, its label, and the files that must exist so
    transformers keeps loading the default once ``additional_chat_templates/`` exists.

    Returns:
        ``(default_text, label, copies)``; ``copies`` maps paths to byte-identical copies of
        templates held only in ``tokenizer_config.json``.
    Raises:
        InputError: missing folder, not a folder, no template, unreadable files, markers in
        the default template.
    """
    if not model_dir.exists():
        raise InputError("no such directory", str(model_dir), 0, 0)
    if not model_dir.is_dir():
        raise InputError("not a directory (pass the model folder)", str(model_dir), 0, 0)
    jinja, config = model_dir / DEFAULT_FILE, model_dir / CONFIG_FILE
    copies: dict[Path, str] = {}
    if jinja.exists():
        src = read_sources(jinja)[0]
        default, label = src.text, src.label
    elif config.exists():
        try:
            sources = read_sources(config)
        except InputError as exc:
            if exc.kind == "no-template":
                raise InputError(f"no chat template: neither {DEFAULT_FILE} nor a 'chat_template' in {CONFIG_FILE}",
                                 str(model_dir), 0, 0) from None
            raise
        named = {s.name: s for s in sources if s.name}
        if len(sources) == 1 and sources[0].name is None:
            default, label = sources[0].text, sources[0].label
        elif "default" in named:
            default, label = named["default"].text, named["default"].label
        else:
            raise InputError("'chat_template' list has no entry named 'default'", str(config), 1, 1)
        copies[jinja] = default
        for name, s in named.items():
            if name not in ("default", TRAINING_NAME):
                path = model_dir / TEMPLATE_DIR / f"{name}.jinja"
                if not path.exists():
                    copies[path] = s.text
    else:
        raise InputError(f"no chat template: neither {DEFAULT_FILE} nor {CONFIG_FILE}", str(model_dir), 0, 0)
    _refuse_markers(default, label)
    return default, label, copies


def export_hub(model_dir: Path, examples: int = 200, seed: int = 0) -> Export:
    """Prove the folder's default template and write ``additional_chat_templates/training.jinja``.

    Idempotent: the same seed gives the same bytes, and files that already hold them are not
    rewritten (``Export.unchanged``).

    Raises:
        InputError: bad folder or template (exit 2). NotProved: the proof failed (exit 1).
    """
    default, label, copies = model_templates(model_dir)
    result = _prove(default, DEFAULT_FILE, label, examples, seed)
    export = Export(report=result.report)
    export.files.update(copies)
    if copies:
        export.notes.append(f"the default template lives in {CONFIG_FILE} only: copied unchanged to "
                            f"{DEFAULT_FILE}, which transformers reads once {TEMPLATE_DIR}/ exists")
    target = model_dir / TEMPLATE_DIR / f"{TRAINING_NAME}.jinja"
    if target.is_file() and not _same(target, result.text):
        export.notes.append(f"replaced {target}, which differed from the proved template")
    export.files[target] = result.text
    return _commit(export)


# --------------------------------------------------------------------------- trl

@dataclass
class Comparison:
    """Differences between two templates on the probe set (``probes`` conversations, each
    rendered with and without the generation prompt)."""

    probes: int = 0
    render_diffs: int = 0
    first_render_diff: str = ""
    mask_diffs: int = 0
    first_mask_diff: str = ""
    oracle_errors_old: int = 0
    oracle_errors_new: int = 0


def _excerpt(o: Outcome, i: int) -> str:
    return repr(o.text[max(0, i - 30):i + 30]) if isinstance(o, Rendered) else f"<raises {o}>"


def compare(original: str, new: str, old: str, with_masks: bool) -> Comparison:
    """Render the probe set of ``original`` (each probe and its prefixes, with and without the
    generation prompt) with ``new`` and ``old`` and count the differences
    (:func:`tmplc.verification.same_rendering`).

    With ``with_masks``, also compare the ``{% generation %}`` masks (as character sets) on
    conversations both render identically, and count conversations where each fails the check
    against the oracle of ``original`` (:func:`tmplc.verification.check_renderings`).
    """
    orig, a, b = Analysed(original, "original"), Analysed(new, "new"), Analysed(old, "existing")
    cases = orig.probes_and_prefixes
    memos: tuple[dict, dict, dict] = ({}, {}, {})
    cmp = Comparison(probes=len(cases))
    for case in cases:
        r_orig, r_new, r_old = (Renderings(t.compiled, case, m) for t, m in zip((orig, a, b), memos))
        diff = same_rendering(r_new, r_old)
        if diff is not None:
            cmp.render_diffs += 1
            if not cmp.first_render_diff:
                i = diff.first_difference
                cmp.first_render_diff = (f"messages[:{diff.messages}] of a {len(case.messages)}-message probe, "
                                         f"add_generation_prompt={diff.agp}, first difference at character {i}: "
                                         f"ours {_excerpt(diff.a, i)} vs existing {_excerpt(diff.b, i)}")
        if not with_masks:
            continue
        mine, theirs = check_renderings(r_orig, r_new), check_renderings(r_orig, r_old)
        if mine.oracle is not None and mine.problem is None:
            cmp.oracle_errors_new += not mine.ok
            cmp.oracle_errors_old += not theirs.ok or not theirs.valid
        fn, fo = r_new.full(), r_old.full()
        if isinstance(fn, Rendered) and isinstance(fo, Rendered) and fn.text == fo.text \
                and mask_of(fn.spans) != mask_of(fo.spans):
            cmp.mask_diffs += 1
            if not cmp.first_mask_diff:
                x, y = mark_text(fn.text, list(fn.spans)), mark_text(fo.text, list(fo.spans))
                i = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
                cmp.first_mask_diff = f"ours:\n{_around(x, i)}\n\nexisting:\n{_around(y, i)}"
    return cmp


def _around(text: str, i: int) -> str:
    """``text`` from 240 characters before ``i`` to 120 after, ellipses where cut."""
    lo = max(0, i - 240)
    return ("…" if lo else "") + text[lo:i + 120] + ("…" if i + 120 < len(text) else "")


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}text\n{text}\n{ticks}"


def _comparison(name: str, original: str, training: str, existing: dict[str, str | None]) -> list[str]:
    """PR description lines: how the new files differ from TRL's existing ``NAME`` templates."""
    lines = []
    old_orig, old_train = existing.get("original"), existing.get("training")
    if old_orig is None:
        lines.append(f"- `{name}.jinja`: new file.")
    elif old_orig == original:
        lines.append(f"- `{name}.jinja`: unchanged (byte-identical).")
    else:
        c = compare(original, original, old_orig, with_masks=False)
        lines.append(f"- `{name}.jinja`: **changed** — renders differently on {c.render_diffs} of "
                     f"{c.probes} probe conversations" + (f"; {c.first_render_diff}" if c.first_render_diff else
                                                         " (text differs, rendering identical)") + ".")
    if old_train is None:
        lines.append(f"- `{name}_training.jinja`: new file.")
    elif old_train == training:
        lines.append(f"- `{name}_training.jinja`: unchanged (byte-identical).")
    else:
        c = compare(original, training, old_train, with_masks=True)
        lines.append(f"- `{name}_training.jinja`: replaced. On {c.probes} probe conversations (every prefix, "
                     f"with and without the generation prompt): rendering differs on {c.render_diffs}"
                     + (f" ({c.first_render_diff})" if c.first_render_diff else "")
                     + f"; masks differ on {c.mask_diffs} conversations rendered identically; "
                     f"the existing template disagrees with the oracle (or the original's rendering) on "
                     f"{c.oracle_errors_old} conversations, the new one on {c.oracle_errors_new}.")
        if c.first_mask_diff:
            lines += ["", "First mask difference:", "", _fence(c.first_mask_diff)]
    return lines


def pr_description(name: str, original: str, training: str, result, examples: int, seed: int,
                   existing: dict[str, str | None]) -> str:
    """The Markdown pull-request description: proof report, the sample conversation's mask
    (``⟦…⟧`` marks masked text) and the differences from TRL's existing ``NAME`` templates."""
    report = result.report
    view = mask_view(training, sample_case(original), "sample conversation")
    lines = [
        f"# Add proved training template `{name}_training.jinja`",
        "",
        f"Generated by tmplc {__version__} (`tmplc export trl --name {name}`): `{{% generation %}}` markers "
        "inserted into the original template and proved, not hand-written.",
        "",
        "## Files",
        "",
        f"- `trl/chat_templates/{name}.jinja` — the original template (identity comparison).",
        f"- `trl/chat_templates/{name}_training.jinja` — the training template (SFT `assistant_only_loss=True`).",
        "",
        "## Proof",
        "",
        f"- hypothesis examples: {report.examples} (requested {examples}), rendered by the original: {report.valid}",
        f"- seed: {seed} (same seed, same file)",
        f"- assistant turns checked against the mask oracle: {report.turns_checked}",
        "- properties: byte-identical rendering of every prefix with and without the generation prompt "
        "(errors included), and masks equal to the oracle (generated text and stop token in, prompt cue out)",
        "",
        "## Mask of a sample conversation",
        "",
        "`⟦…⟧` marks the characters `return_assistant_tokens_mask=True` masks in.",
        "",
        _fence(mark_text(view.text, view.spans)),
        "",
        "| message | mask [start, end) | prompt cue (not trained) | stop (trained) |",
        "|---|---|---|---|",
    ]
    for t in view.turns:
        cue = repr(view.text[t.cue[0]:t.cue[1]]) if t.cue else "-"
        stop = repr(view.text[t.stop[0]:t.stop[1]]) if t.stop else "-"
        cell = lambda s: s.replace("|", "\\|")  # noqa: E731 - a pipe ends a GFM table cell, even in code
        lines.append(f"| {t.message} | [{t.mask[0]}, {t.mask[1]}) | `{cell(cue)}` | `{cell(stop)}` |")
    lines += ["", "## Compared with the existing TRL templates", "", *_comparison(name, original, training, existing)]
    lines += [
        "",
        "## Checklist",
        "",
        f"- [ ] `trl/chat_template_utils.py`: load `{name}_training.jinja` and return it from "
        f"`get_training_chat_template` when the tokenizer's template equals `{name}.jinja`.",
        f"- [ ] `trl/chat_templates/README.md`: document `{name}.jinja` and `{name}_training.jinja` "
        "(diff: `{% generation %}` markers only; rendering unchanged).",
        "- [ ] The training template is never a model's default (`chat_template.jinja`): minijinja-based "
        "servers (TGI, mistral.rs) fail with `unknown statement generation` (tmplc lint TMPL013).",
        "",
    ]
    return "\n".join(lines)


def _baseline(checkout: Path, path: Path) -> str | None:
    """The text ``path`` has upstream: its committed version (``git show HEAD:path``) when the
    checkout is a git repository, else the file on disk; None when there is none. Comparing with
    HEAD keeps the PR description the same when the export is run again."""
    import subprocess

    if (checkout / ".git").exists():
        rel = path.relative_to(checkout).as_posix()
        try:
            proc = subprocess.run(["git", "-C", str(checkout), "show", f"HEAD:{rel}"], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            proc = None
        if proc is not None:  # git answered: the file is committed, or it is new upstream
            if proc.returncode != 0:
                return None
            try:
                return proc.stdout.decode("utf-8")
            except UnicodeDecodeError:
                return None
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def export_trl(checkout: Path, name: str, template: Path, pr_out: Path | None = None, examples: int = 200,
               seed: int = 0) -> tuple[Export, Path, str]:
    """Prove ``template`` and write it in TRL's layout with a PR description.

    Args:
        checkout: a TRL checkout (must hold ``trl/chat_templates/``). name: the template name
            (``qwen3_vl``: writes ``qwen3_vl.jinja`` and ``qwen3_vl_training.jinja``).
        template: the original template file. pr_out: where to write the Markdown (default
            ``./NAME_PR.md``).
    Returns:
        ``(export, pr_path, pr_text)``.
    Raises:
        InputError: not a TRL checkout, bad name, unreadable/malformed template, or a template
        that already has markers (exit 2). NotProved: the proof failed (exit 1).
    """
    if not checkout.exists():
        raise InputError("no such directory", str(checkout), 0, 0)
    target = checkout / TRL_DIR
    if not target.is_dir():
        raise InputError(f"not a TRL checkout: no {TRL_DIR.as_posix()}/ directory", str(checkout), 0, 0)
    if not NAME_RE.match(name) or name.endswith("_training"):
        raise InputError(f"bad --name {name!r}: letters, digits, '_', '.', '-', not ending in _training",
                         str(checkout), 0, 0)
    src = read_template(template)
    if has_markers(src.text):
        _refuse_markers(src.text, src.label)
    result = _prove(src.text, f"{name}.jinja", src.label, examples, seed)
    paths = {"original": target / f"{name}.jinja", "training": target / f"{name}_training.jinja"}
    existing = {key: _baseline(checkout, path) for key, path in paths.items()}
    pr = pr_description(name, src.text, result.text, result, examples, seed, existing)
    pr_path = pr_out if pr_out is not None else Path.cwd() / f"{name}_PR.md"
    export = Export(report=result.report)
    export.files[paths["original"]] = src.text
    export.files[paths["training"]] = result.text
    export.files[pr_path] = pr
    return _commit(export), pr_path, pr


# --------------------------------------------------------------------------- CLI glue

def _status(export: Export, what: str) -> str:
    if not export.changed:
        return f"{what}: up to date ({len(export.files)} files unchanged)"
    return f"{what}: wrote " + ", ".join(str(p) for p in export.changed)


def _examples(export: Export) -> int:
    return export.report.examples if export.report else 0


def run_export_hub(model_dir: Path, examples: int, seed: int) -> None:
    """``tmplc export hub``: print what was written (or that it is up to date).

    Raises:
        InputError, OutputError: bad folder or template, unwritable target (exit 2).
        NotProved: the proof failed (exit 1).
    """
    import click

    export = export_hub(model_dir, examples, seed)
    for note in export.notes:
        click.echo(f"note: {note}")
    click.echo(f"{model_dir}: proved on {_examples(export)} examples (seed {seed}); " + _status(export, "training template")
               + f'; load with apply_chat_template(..., chat_template="{TRAINING_NAME}")')


def run_export_trl(checkout: Path, name: str, template: Path, pr_out: Path | None, examples: int, seed: int) -> None:
    """``tmplc export trl``: print what was written (or that it is up to date).

    Raises:
        InputError, OutputError: bad checkout, name or template, unwritable target (exit 2).
        NotProved: the proof failed (exit 1).
    """
    import click

    export, pr_path, _ = export_trl(checkout, name, template, pr_out, examples, seed)
    templates = Export({p: t for p, t in export.files.items() if p != pr_path},
                       [p for p in export.unchanged if p != pr_path])
    click.echo(f"{template}: proved on {_examples(export)} examples (seed {seed}); " + _status(templates, name)
               + f"; PR description: {pr_path}" + (" (unchanged)" if pr_path in export.unchanged else ""))


__all__ = ["Comparison", "Export", "compare", "export_hub", "export_trl", "model_templates", "pr_description",
           "run_export_hub", "run_export_trl"]
