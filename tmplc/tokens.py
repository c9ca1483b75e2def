"""Token-level check of generation masks: what training actually sees.

Training happens on tokens. transformers' ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` maps each ``{% generation %}`` span ``[start, end)`` (characters)
to tokens with ``char_to_token(start)`` and ``char_to_token(end - 1)`` and masks every token between.
A span that ends inside a character split into several byte tokens (``🐱`` is 3 Qwen3 tokens) masks
only the first of them: the rest fall out of the mask even when the next span starts right there.
The character-level proof cannot see that; this module can.

The *expected* token mask is derived independently from the tokenizer's offsets
(``return_offsets_mapping``, characters of the rendered text) and the union of the generation spans:

* a token whose characters lie wholly inside the union must be masked,
* a token wholly outside must not be masked,
* a token with characters on both sides *straddles* a span edge. That is inherent to the text, not
  to the markers: Qwen's ``<|im_start|>assistant\\n`` cue followed by content starting ``\\n\\n``
  merges into one ``\\n\\n\\n`` token that is half prompt, half output. Straddling tokens are counted
  and reported as a warning, never judged silently.

Units: ``spans`` and offsets are characters of the rendered text; every count in
:class:`TokenReport` is tokens.

transformers is imported lazily inside functions (never at module import): ``tmplc lint`` must not
import it. Sentinels (``«1c»…«/1c»``, :mod:`tmplc.conversations`) wrap every field of the proof's
conversations; ``»`` is itself a 2-byte UTF-8 character, so with sentinels the character before a stop
token is never the field's own last character and the bug above hides. Run the token check on
:func:`plain` cases too: it compares generation spans with token masks and needs no sentinels.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conversations import Case, plain, strip_sentinels
from .errors import InputError
from .render import merge_spans, render

Span = tuple[int, int]

IN, OUT, STRADDLING, EMPTY = "in", "out", "straddling", "empty"


class RenderingMismatch(ValueError):
    """transformers tokenized a different text than tmplc rendered (a renderer divergence)."""


@dataclass(frozen=True)
class TokenReport:
    """Token-level outcome of one rendering. Every count is in tokens.

    Fields:
        tokens: tokens of the rendering (``add_special_tokens=False``, as ``apply_chat_template``).
        masked: tokens the assistant mask sets (transformers' ``assistant_masks``).
        expected: tokens wholly inside the union of generation spans (must be masked).
        lost: expected tokens the assistant mask leaves out (the model never learns them).
        added: masked tokens wholly outside every generation span (trained although not generated).
        straddling: tokens with characters inside and outside a span (cue/body merges); a warning.
        open_end: tokens of the rendering's last character, inside a generation span that ends the
            rendering, that the assistant mask leaves out: transformers maps a span's end to the
            *first* token of its last character (``char_to_token(end - 1)``), and a template that
            writes nothing after a final assistant turn (no terminator: GLM, ``\n\nUser:``
            formats) ends the rendering inside that character's tokens. Inherent to the template,
            not to the markers (no marker placement reaches them): a warning, counted apart from
            ``lost``; ``--append-stop`` ends the turn with its stop and removes it.
        stop_token_trained: mirror of TRL's ``is_chat_template_stop_token_trained``: True when the
            last masked non-whitespace token of every generated run (merged generation spans: an
            assistant turn) that other text follows is an added-vocabulary token (``<|im_end|>``);
            False when one is not; None when no generated run is followed by anything.
        stop_text: the decoded last masked non-whitespace token of the first run checked (the
            failing one when ``stop_token_trained`` is False), e.g. ``'<|im_end|>'`` or ``'User:'``.
        plain_text_stop: True when that token is plain text (not added vocabulary): a template
            whose stop is ``\\n\\nUser:``, or a turn whose stop token was left to the next message.
        detail: one line about the first problem (token index, id, text, character offsets); "" when
            nothing was lost or added.
        straddling_detail: the same for the first straddling token; "" when there is none.

    Source of the ideas: transformers' ``apply_chat_template(..., return_assistant_tokens_mask=True)``
    (what is trained) and TRL's ``is_chat_template_stop_token_trained`` (the stop check).
    """

    tokens: int
    masked: int
    expected: int
    lost: int
    added: int
    straddling: int
    open_end: int = 0
    stop_token_trained: bool | None = None
    stop_text: str | None = None
    plain_text_stop: bool = False
    detail: str = ""
    straddling_detail: str = ""

    @property
    def ok(self) -> bool:
        """No token lost and none added (straddling tokens are warnings)."""
        return self.lost == 0 and self.added == 0


# ----------------------------------------------------------------------------- loading

def load_tokenizer(path: str | Path):
    """Load a fast tokenizer from disk, offline.

    Args:
        path: a folder written by ``save_pretrained`` (``tokenizer.json`` and/or
            ``tokenizer_config.json``), a ``tokenizer.json`` file (its folder's
            ``tokenizer_config.json`` is used when present, for special tokens), or a
            ``tokenizer_config.json`` whose folder holds the tokenizer.

    Returns:
        A ``transformers`` fast tokenizer (``PreTrainedTokenizerFast`` or a subclass). Loaded with
        ``AutoTokenizer.from_pretrained(folder, local_files_only=True)``: never touches the network.

    Raises:
        InputError: missing path, no tokenizer in the folder, unreadable/corrupt files, a slow
            (Python) tokenizer — which has no ``char_to_token``/offsets. ``str(err)`` is one line
            ``path:line:col: message`` (line/col 0 when unknown, the JSON position when corrupt).
    """
    p = Path(path)
    label = str(path)
    if not p.exists():
        raise InputError("no such file or directory", label, 0, 0)
    if p.is_dir():
        folder, single = p, None
        if not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
            raise InputError("no tokenizer here (expected tokenizer.json or tokenizer_config.json)", label, 0, 0)
    elif p.name == "tokenizer_config.json":
        folder, single = p.parent, None
    elif p.suffix == ".json":
        folder = p.parent
        single = None if (folder / "tokenizer_config.json").is_file() and p.name == "tokenizer.json" else p
    else:
        raise InputError("expected a tokenizer folder, tokenizer.json or tokenizer_config.json", label, 0, 0)
    try:
        import transformers
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            if single is not None:
                tok: Any = transformers.PreTrainedTokenizerFast(tokenizer_file=str(single))
            else:
                tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
    except Exception as exc:  # noqa: BLE001 - any loader failure is bad input, reported in one line
        for f in ([single] if single else [folder / "tokenizer_config.json", folder / "tokenizer.json"]):
            if f.is_file():
                _check_json(f)  # a corrupt file: report its JSON position
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(f"cannot load tokenizer: {msg}", label, 0, 0) from None
    if not getattr(tok, "is_fast", False):
        raise InputError("a slow (Python) tokenizer has no character offsets; a tokenizer.json is needed", label, 0, 0)
    return tok


def _check_json(f: Path) -> None:
    try:
        with open(f, encoding="utf-8") as fh:
            json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(f"corrupt JSON: {exc.msg}", str(f), exc.lineno, exc.colno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable: {type(exc).__name__}", str(f), 0, 0) from None


# ----------------------------------------------------------------------------- masks

def classify_tokens(offsets: Sequence[Span], spans: Sequence[Span]) -> list[str]:
    """Expected state of each token, from offsets only (independent of ``char_to_token``).

    Args:
        offsets: per token, ``(start, end)`` in characters of the rendered text (the tokenizer's
            ``offset_mapping``; several byte tokens of one character share that character's offsets).
        spans: generation spans in characters (any order, may touch or overlap).

    Returns:
        Per token: ``"in"`` (wholly inside the union of spans: must be masked), ``"out"`` (wholly
        outside: must not be masked), ``"straddling"`` (both) or ``"empty"`` (zero-width offsets:
        no characters, not judged).
    """
    runs = merge_spans(spans)
    starts = [r[0] for r in runs]
    states: list[str] = []
    append = states.append
    for a, b in offsets:
        if b <= a:
            append(EMPTY)
            continue
        k = bisect.bisect_right(starts, a) - 1  # the last run starting at or before a
        if k >= 0 and runs[k][1] >= b:
            append(IN)
        elif (k >= 0 and runs[k][1] > a) or (k + 1 < len(runs) and runs[k + 1][0] < b):
            append(STRADDLING)
        else:
            append(OUT)
    return states


def transformers_assistant_mask(char_to_token, spans: Sequence[Span], n_tokens: int) -> list[int]:
    """The assistant mask transformers computes from a tokenization and generation spans.

    Mirrors the loop in ``PreTrainedTokenizerBase.apply_chat_template`` (transformers 5.x,
    ``return_assistant_tokens_mask=True``): for each span in render order, ``start_token =
    char_to_token(start)``, ``end_token = char_to_token(end - 1)``; a None start stops all later
    spans; a None/0 end masks to the end of the sequence. Used on the fast path
    (:func:`check_rendering`) so a caller that already rendered need not render again;
    :func:`check_tokens` runs the real ``apply_chat_template`` instead, and a test checks the two agree.

    Args:
        char_to_token: character index → token index or None, for one text (``Encoding.char_to_token``
            of ``tokenizers``, or ``lambda c: batch_encoding.char_to_token(0, c)``).
        spans: generation spans in characters, in the order the template rendered them.
        n_tokens: number of tokens.

    Returns:
        0/1 per token.
    """
    mask = [0] * n_tokens
    for a, b in spans:
        start = char_to_token(a)
        end = char_to_token(b - 1)
        if start is None:
            break
        for t in range(start, end + 1 if end else n_tokens):
            mask[t] = 1
    return mask


_VOCAB: dict[tuple[int, int], tuple[set[int], dict[int, bool]]] = {}


def _vocab_info(tokenizer) -> tuple[set[int], dict[int, bool]]:
    """Added-vocabulary ids and a per-id "decodes to whitespace" cache, per tokenizer and size."""
    key = (id(tokenizer), len(tokenizer))
    info = _VOCAB.get(key)
    if info is None:
        info = _VOCAB[key] = (set(tokenizer.get_added_vocab().values()), {})
    return info


def _describe(tokenizer, ids: Sequence[int], offsets: Sequence[Span], text: str, t: int) -> str:
    a, b = offsets[t]
    piece = tokenizer.convert_ids_to_tokens(int(ids[t]))
    return f"token {t} (id {int(ids[t])}, {piece!r}) at characters [{a}, {b}) {text[a:b]!r}"


def _stop_check(tokenizer, ids: Sequence[int], mask: Sequence[int], offsets: Sequence[Span],
                runs: Sequence[Span], text: str) -> tuple[bool | None, str | None, bool]:
    """TRL's ``is_chat_template_stop_token_trained`` idea on every generated run (a merged
    generation span, i.e. an assistant turn) that other text follows: among the masked tokens
    overlapping the run, the last non-whitespace one must be added vocabulary (``<|im_end|>``)."""
    added, blank = _vocab_info(tokenizer)

    def is_blank(i: int) -> bool:
        if i not in blank:
            blank[i] = tokenizer.decode([i]).strip() == ""
        return blank[i]

    first: tuple[bool, str, bool] | None = None
    t = 0
    n = len(ids)
    for a, b in runs:
        if not text[b:].strip():
            break  # nothing follows: the last turn, not applicable (TRL renders a user message after it)
        while t < n and offsets[t][1] <= a:
            t += 1
        last = None
        u = t
        while u < n and offsets[u][0] < b:
            if mask[u] and not is_blank(int(ids[u])):
                last = u
            u += 1
        if last is None:
            continue
        ok = int(ids[last]) in added
        result = (ok, tokenizer.decode([int(ids[last])]), not ok)
        if first is None or not ok:
            first = result
        if not ok:
            break
    if first is None:
        return None, None, False
    return first


def check_rendering(tokenizer, text: str, spans: Sequence[Span], assistant_mask: Sequence[int] | None = None,
                    input_ids: Sequence[int] | None = None, stop_check: bool = True) -> TokenReport:
    """Token-level check of one rendering that is already done (the fast path, one tokenization).

    Args:
        tokenizer: a fast tokenizer (:func:`load_tokenizer`).
        text: the rendered conversation.
        spans: its ``{% generation %}`` spans, characters of ``text``, in render order (as
            :func:`tmplc.render.render` returns them).
        assistant_mask: the mask training uses (``apply_chat_template(...)["assistant_masks"]``);
            default: computed by :func:`transformers_assistant_mask` from ``spans``.
        input_ids: the ids that mask belongs to; when given they must equal the tokenization of
            ``text`` (else ``ValueError``: the renderings differ).
        stop_check: run the stop-token check (needs ``decode`` of a few tokens).

    Returns:
        :class:`TokenReport` (counts in tokens).

    Raises:
        RenderingMismatch: ``input_ids`` differ from the tokenization of ``text``.
        ValueError: the mask has the wrong length.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if input_ids is None and backend is not None:
        # fast path: the Rust tokenizer directly (what ``tokenizer(text)`` calls underneath)
        enc = backend.encode(text, add_special_tokens=False)
        ids, offsets, char_to_token = enc.ids, enc.offsets, enc.char_to_token
    else:
        benc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = benc["input_ids"], [tuple(o) for o in benc["offset_mapping"]]
        char_to_token = lambda c: benc.char_to_token(0, c)  # noqa: E731
    if input_ids is not None and list(map(int, input_ids)) != list(ids):
        raise RenderingMismatch("apply_chat_template tokenized a different text than tmplc rendered "
                         f"({len(input_ids)} vs {len(ids)} tokens)")
    mask = list(assistant_mask) if assistant_mask is not None else transformers_assistant_mask(char_to_token, spans, len(ids))
    if len(mask) != len(ids):
        raise ValueError(f"assistant mask has {len(mask)} entries for {len(ids)} tokens")
    states = classify_tokens(offsets, spans)
    end_tokens = _open_end(offsets, spans, len(text))
    lost = [t for t, s in enumerate(states) if s == IN and not mask[t] and t not in end_tokens]
    open_end = sum(1 for t in end_tokens if not mask[t])
    added = [t for t, s in enumerate(states) if s == OUT and mask[t]]
    straddling = [t for t, s in enumerate(states) if s == STRADDLING]
    detail = ""
    if lost:
        detail = f"{len(lost)} token(s) inside a generation span not masked; first: " + _describe(tokenizer, ids, offsets, text, lost[0])
    elif added:
        detail = f"{len(added)} token(s) outside every generation span masked; first: " + _describe(tokenizer, ids, offsets, text, added[0])
    sdetail = ""
    if straddling:
        sdetail = f"{len(straddling)} token(s) straddle a span edge; first: " + _describe(tokenizer, ids, offsets, text, straddling[0])
    stop = _stop_check(tokenizer, ids, mask, offsets, merge_spans(spans), text) if stop_check else (None, None, False)
    return TokenReport(len(ids), sum(1 for m in mask if m), sum(1 for s in states if s == IN), len(lost), len(added),
                       len(straddling), open_end, stop[0], stop[1], stop[2], detail, sdetail)


def _open_end(offsets: Sequence[Span], spans: Sequence[Span], n_chars: int) -> set[int]:
    """Indices of the tokens of the last character of a rendering that a generation span ends
    (see ``TokenReport.open_end``); empty when no span ends the rendering."""
    if not n_chars or not any(b == n_chars and a < b for a, b in spans):
        return set()
    return {t for t, (a, b) in enumerate(offsets) if a == n_chars - 1 and b == n_chars}


def template_kwargs(tokenizer, case: Case) -> dict[str, Any]:
    """The template variables ``apply_chat_template`` passes besides messages/tools: the
    tokenizer's ``special_tokens_map`` overridden by the case's kwargs."""
    return {**tokenizer.special_tokens_map, **case.kwargs}


def check_tokens(tokenizer, training_source: str, case: Case) -> TokenReport:
    """Token-level check of one conversation through the real ``apply_chat_template``.

    Calls ``tokenizer.apply_chat_template(case.messages, tools=case.tools,
    chat_template=training_source, add_generation_prompt=case.full_agp, tokenize=True,
    return_dict=True, return_assistant_tokens_mask=True, **case.kwargs)`` (transformers 5.x) for the
    mask training uses, renders independently with :func:`tmplc.render.render` for the text and the
    generation spans (same normalization and special-token kwargs as transformers), tokenizes that
    text with offsets, and compares (see :func:`check_rendering`).

    Args:
        tokenizer: a fast tokenizer (:func:`load_tokenizer`), loaded once by the caller.
        training_source: the training template (with ``{% generation %}`` markers).
        case: a :class:`tmplc.conversations.Case`; use :func:`plain` for a case without sentinels.

    Returns:
        :class:`TokenReport` (counts in tokens).

    Raises:
        Whatever the template raises (``jinja2.TemplateError``...) on the conversation;
        :class:`RenderingMismatch` when transformers tokenized a different text than tmplc rendered.
    """
    messages = case.messages  # both sides drop None-valued keys (tmplc.render.drop_none)
    kwargs = template_kwargs(tokenizer, case)
    out = tokenizer.apply_chat_template(
        messages, tools=case.tools, chat_template=training_source, add_generation_prompt=case.full_agp,
        tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **case.kwargs,
    )
    text, spans = render(training_source, messages, case.tools, add_generation_prompt=case.full_agp, **kwargs)
    return check_rendering(tokenizer, text, spans, out["assistant_masks"], out["input_ids"])


def check_case_tokens(tokenizer, training_source, case: Case) -> TokenReport:
    """Fast per-case check for a verification core: one render (:func:`tmplc.render.render`, so
    ``training_source`` may be compiled by :func:`tmplc.render.compile_template`) and one
    tokenization; transformers' mask is computed by :func:`transformers_assistant_mask`.

    Args, returns and raises as :func:`check_tokens`.
    """
    text, spans = render(training_source, case.messages, case.tools, add_generation_prompt=case.full_agp,
                         **template_kwargs(tokenizer, case))
    return check_rendering(tokenizer, text, spans)


class TokenChecker:
    """The token-level check the verification core runs on every conversation of a proof
    (:func:`tmplc.verification.check_renderings`), with one tokenizer loaded once.

    For a conversation it checks the rendering the proof already has (with sentinels) and the
    :func:`plain` rendering of the same conversation (sentinels end every field with ``»``, which
    hides a span edge inside the field's last character). Idea: transformers'
    ``apply_chat_template(..., return_assistant_tokens_mask=True)`` maps spans to tokens with
    ``char_to_token`` at their first and last character (:func:`transformers_assistant_mask`).

    Args:
        tokenizer: a fast tokenizer (:func:`load_tokenizer`).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, template, case: Case, text: str, spans: Sequence[Span]) -> list[TokenReport]:
        """Reports (counts in tokens) for ``text``/``spans`` (characters; the training template's
        rendering of ``case``) and for the plain form of ``case``; the plain form is skipped when
        the template refuses it."""
        reports = [check_rendering(self.tokenizer, text, spans)]
        p = plain(case)
        try:
            plain_text, plain_spans = render(template, p.messages, p.tools, add_generation_prompt=p.full_agp, **p.kwargs)
        except Exception:  # noqa: BLE001 - a template that refuses the plain form: nothing more to check
            return reports
        reports.append(check_rendering(self.tokenizer, plain_text, plain_spans))
        return reports


# ----------------------------------------------------------------------------- sentinels

__all__ = [
    "RenderingMismatch", "TokenChecker", "TokenReport", "load_tokenizer", "check_tokens", "check_rendering", "check_case_tokens", "classify_tokens",
    "transformers_assistant_mask", "plain", "strip_sentinels",
    "template_kwargs",
]
