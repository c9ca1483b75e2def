"""Token-level check of generation masks: what training actually sees (the one owner of the
span → token mapping).

Training happens on tokens. ``apply_chat_template(..., return_assistant_tokens_mask=True)`` renders
the template, records one character span ``[start, end)`` per ``{% generation %}`` block and maps
the spans to a per-token mask. How it maps them depends on the installed transformers:

* ``char_to_token`` (transformers ≤ 5.23): for each span in render order, the tokens from
  ``char_to_token(start)`` to ``char_to_token(end - 1)``. A span ending inside a character split
  into several byte tokens (``🐱`` is 3 Qwen3 tokens) masks only the first of them; an end mapping
  to None (a combining mark merged by NFC) masks to the end of the sequence; a start mapping to
  None ends the mapping.
* ``overlap`` (transformers ≥ 5.24): every token whose offsets overlap a span (``ProcessorMixin``'s
  rule): no token of a span is lost, and a token that straddles a span edge is trained whole.

:func:`installed_mapping` says which one the installed transformers uses (probed once per process
on a tiny in-code tokenizer); :func:`trained_mask` computes the mask of a rendering by calling the
installed ``apply_chat_template`` itself (so it is exactly what training gets, whatever the
version), with the tokens that straddle a span edge; :func:`mirror_mask` is the same mapping
computed in Python (used where transformers cannot be called: ``sanitize_control_tokens``).

The *expected* token mask is derived independently from the tokenizer's offsets
(``return_offsets_mapping``, characters of the rendered text) and the union of the generation spans:

* a token whose characters lie wholly inside the union must be masked,
* a token wholly outside must not be masked,
* a token with characters on both sides *straddles* a span edge. That is inherent to the text, not
  to the markers: Qwen's ``<|im_start|>assistant\\n`` cue followed by content starting ``\\n\\n``
  merges into one ``\\n\\n\\n`` token that is half prompt, half output. Straddling tokens are
  reported (:class:`Straddle`: token, edge, trained or not) as a warning, never judged silently.

Units: ``spans`` and offsets are characters of the rendered text; every count in
:class:`TokenReport` is tokens.

transformers is imported lazily inside functions (never at module import): ``tmplc lint`` must not
import it. Sentinels (``«1c»…«/1c»``, :mod:`tmplc.conversations`) wrap every field of the proof's
conversations; ``»`` is itself a 2-byte UTF-8 character, so with sentinels the character before a stop
token is never the field's own last character and the ``char_to_token`` loss hides. Run the token
check on :func:`plain` cases too: it compares generation spans with token masks and needs no sentinels.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conversations import Case, plain, strip_sentinels
from .errors import InputError
from .render import merge_spans, render

Span = tuple[int, int]

IN, OUT, STRADDLING, EMPTY = "in", "out", "straddling", "empty"
# The two ways transformers has mapped generation spans to tokens (module docstring, docs/tokens.md).
CHAR_TO_TOKEN, OVERLAP, UNKNOWN = "char_to_token", "overlap", "unknown"
MAPPINGS = (CHAR_TO_TOKEN, OVERLAP)


class RenderingMismatch(ValueError):
    """transformers tokenized a different text than tmplc rendered (a renderer divergence)."""


class SanitizeUnsupported(ValueError):
    """``sanitize_control_tokens=True`` asked of a transformers (or a mapping) that cannot do it."""


@dataclass(frozen=True)
class Straddle:
    """A token with characters on both sides of an edge of the union of generation spans.

    Fields (token indices are tokens; every other position is characters of the rendered text):
        token: index of the token in the rendering.
        chars: the token's characters ``[start, end)`` (its ``offset_mapping``).
        text: those characters, e.g. ``'\\n\\n\\n'``.
        piece: the vocabulary entry (``convert_ids_to_tokens``), e.g. ``'ĊĊĊ'``.
        edges: each span edge inside the token, in order: ``(character, "start" | "end")`` — the
            start of a span (prompt before, generated text after) or its end.
        trained: the assistant mask sets the token (under ``overlap`` always; under
            ``char_to_token`` when the edge's character maps to it).
    """

    token: int
    chars: Span
    text: str
    piece: str
    edges: tuple[tuple[int, str], ...]
    trained: bool

    @property
    def edge(self) -> str:
        """``"start"``, ``"end"`` or ``"start+end"`` (a whole span inside the token)."""
        return "+".join(dict.fromkeys(kind for _, kind in self.edges))

    def describe(self) -> str:
        a, b = self.chars
        where = " and ".join(f"the {kind} of a span at character {c}" for c, kind in self.edges)
        return (f"token {self.token} ({self.piece!r}) at characters [{a}, {b}) {self.text!r} straddles {where} "
                f"({'trained' if self.trained else 'not trained'})")


@dataclass(frozen=True)
class TrainedMask:
    """The per-token assistant mask the installed transformers computes for one rendering.

    Fields:
        mapping: how transformers mapped the spans (:func:`installed_mapping`): ``"char_to_token"``,
            ``"overlap"`` or ``"unknown"`` (a transformers whose mapping neither mirror reproduces;
            the mask is still its own, from the call).
        method: ``"apply_chat_template"`` (the installed function was called) or ``"mirror"``
            (:func:`mirror_mask`: spans out of render order, or ``sanitize_control_tokens``).
        text: the text the tokens cover (with ``sanitize_control_tokens`` the rendering without
            transformers' private-use markers; else the rendering itself).
        spans: the generation spans, characters of ``text``.
        ids, offsets, mask: per token: id, ``(start, end)`` characters of ``text``, 0/1.
        straddles: the tokens straddling an edge of the spans' union (:class:`Straddle`).
    """

    mapping: str
    method: str
    text: str
    spans: tuple[Span, ...]
    ids: tuple[int, ...]
    offsets: tuple[Span, ...]
    mask: tuple[int, ...]
    straddles: tuple[Straddle, ...]


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
            rendering, that the assistant mask leaves out: under the ``char_to_token`` mapping a
            span's end maps to the *first* token of its last character (``char_to_token(end - 1)``),
            and a template that writes nothing after a final assistant turn (no terminator: GLM,
            ``\\n\\nUser:`` formats) ends the rendering inside that character's tokens. Inherent to
            the template, not to the markers (no marker placement reaches them): a warning, counted
            apart from ``lost``; ``--append-stop`` ends the turn with its stop and removes it. Always
            0 under ``overlap``.
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
        straddling_detail: the same for the first straddling token, with its edge and whether it is
            trained; "" when there is none.
        mapping: the span → token mapping of the installed transformers (:func:`installed_mapping`).
        straddles: every straddling token (:class:`Straddle`: token text, edge, trained).

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
    mapping: str = ""
    straddles: tuple[Straddle, ...] = ()

    @property
    def ok(self) -> bool:
        """No token lost and none added (straddling tokens are warnings)."""
        return self.lost == 0 and self.added == 0

    @property
    def straddling_trained(self) -> int:
        """Straddling tokens the mask trains (part prompt, trained as output)."""
        return sum(1 for s in self.straddles if s.trained)


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


# ----------------------------------------------------------------------------- the span -> token mapping

def char_to_token_of(offsets: Sequence[Span]) -> Callable[[int], int | None]:
    """``Encoding.char_to_token`` of one sequence, from its offsets: the first token whose
    characters contain character ``c``, or None (a character no token covers, e.g. a combining
    mark an NFC normalizer merged into the previous character's token).

    Args:
        offsets: per token ``(start, end)``, characters.

    Returns:
        ``c -> token index | None``; ``c < 0`` raises ``OverflowError`` as the Rust tokenizer does
        (``char_to_token(-1)``: an empty span at character 0 under the ``char_to_token`` mapping).
    """
    def char_to_token(c: int) -> int | None:
        if c < 0:
            raise OverflowError("can't convert negative int to unsigned")
        return next((t for t, (a, b) in enumerate(offsets) if a <= c < b), None)

    return char_to_token


def mirror_mask(mapping: str, offsets: Sequence[Span], spans: Sequence[Span]) -> list[int]:
    """The assistant mask ``apply_chat_template(..., return_assistant_tokens_mask=True)`` computes
    under ``mapping``, in Python (the same loop as transformers, so also for odd spans).

    * ``"char_to_token"`` (``PreTrainedTokenizerBase.apply_chat_template``, transformers ≤ 5.23):
      for each span in render order, ``start_token = char_to_token(start)``, ``end_token =
      char_to_token(end - 1)``; a None start stops all later spans; a None/0 end masks to the end
      of the sequence; tokens ``start_token..end_token`` are masked.
    * ``"overlap"`` (transformers ≥ 5.24): one pass over the tokens with the spans in render
      order: a token is masked when it ends after the start of the first span it does not start
      at or after the end of (for sorted spans: every token overlapping a span; a zero-width
      token strictly inside a span too).

    Args:
        mapping: ``"char_to_token"`` or ``"overlap"`` (:data:`MAPPINGS`).
        offsets: per token ``(start, end)``, characters of the rendered text.
        spans: generation spans, characters, in the order the template rendered them.

    Returns:
        0/1 per token.

    Raises:
        ValueError: an unknown mapping. OverflowError: ``char_to_token`` and an empty span at 0.
    """
    n = len(offsets)
    mask = [0] * n
    if mapping == CHAR_TO_TOKEN:
        char_to_token = char_to_token_of(offsets)
        for a, b in spans:
            start, end = char_to_token(a), char_to_token(b - 1)
            if start is None:
                break
            for t in range(start, end + 1 if end else n):
                mask[t] = 1
    elif mapping == OVERLAP:
        k = 0
        for t, (a, b) in enumerate(offsets):
            while k < len(spans) and a >= spans[k][1]:
                k += 1
            if k == len(spans):
                break
            if b > spans[k][0]:
                mask[t] = 1
    else:
        raise ValueError(f"unknown mapping {mapping!r}: one of {', '.join(MAPPINGS)}")
    return mask


# Writes its pieces, the generated ones inside generation blocks: apply_chat_template then records
# exactly the given spans over exactly the given text (no other markup; {{ }} output is verbatim).
_PIECES = ("{% for text, generated in tmplc_pieces %}{% if generated %}{% generation %}{{ text }}{% endgeneration %}"
           "{% else %}{{ text }}{% endif %}{% endfor %}")


def _in_render_order(spans: Sequence[Span], n_chars: int) -> bool:
    """Spans a template can have rendered one after the other: sorted, disjoint, inside the text."""
    end = 0
    for a, b in spans:
        if not end <= a <= b <= n_chars:
            return False
        end = b
    return True


def _called(tokenizer, text: str, spans: Sequence[Span]) -> tuple[list[int], list[Span], list[int]]:
    """ids, offsets and ``assistant_masks`` of ``text`` from the installed ``apply_chat_template``
    itself, on a template writing ``text`` with ``spans`` as its generation blocks."""
    pieces, pos = [], 0
    for a, b in spans:
        pieces += [[text[pos:a], False], [text[a:b], True]]
        pos = b
    pieces.append([text[pos:], False])
    out = tokenizer.apply_chat_template([{"role": "user", "content": ""}], chat_template=_PIECES, tmplc_pieces=pieces,
                                        tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    return list(out["input_ids"]), [tuple(o) for o in out.encodings[0].offsets], list(out["assistant_masks"])


def _probe_tokenizer():
    """A byte-level BPE tokenizer built in code (no files): the 256 byte symbols and the merges
    ``a b`` and ``c d``, so ``"abécd"`` is ``ab``, the two bytes of ``é`` (both at character 2),
    ``cd``."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update(ab=len(vocab), cd=len(vocab) + 1)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("c", "d")]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend)


PROBE_TEXT, PROBE_SPANS = "abécd", ((1, 3), (4, 4))  # a span from inside 'ab' to the end of 'é'; an empty span inside 'cd'


@functools.cache
def installed_mapping() -> str:
    """How the installed transformers maps generation spans to tokens, probed once per process.

    Calls the installed ``apply_chat_template(..., return_assistant_tokens_mask=True)`` on
    :data:`PROBE_TEXT` with :data:`PROBE_SPANS` through a byte-level tokenizer built in code
    (:func:`_probe_tokenizer`: ``é`` is two tokens) and compares its mask with :func:`mirror_mask`
    of each mapping: ``char_to_token`` masks ``[1, 1, 0, 1]`` (only the first byte of ``é``),
    ``overlap`` ``[1, 1, 1, 1]``.

    Returns:
        ``"char_to_token"``, ``"overlap"``, or ``"unknown"`` when neither reproduces it (token
        checks still use the call's own mask; only the mirror-based paths refuse).

    Raises:
        ImportError: transformers (or tokenizers) is not installed.
    """
    tok = _probe_tokenizer()
    _, offsets, mask = _called(tok, PROBE_TEXT, PROBE_SPANS)
    return next((m for m in MAPPINGS if mirror_mask(m, offsets, PROBE_SPANS) == mask), UNKNOWN)


def transformers_version() -> str:
    """The installed transformers' version string (imports transformers)."""
    import transformers

    return str(transformers.__version__)


def describe_mapping(mapping: str | None = None) -> str:
    """``"overlap mapping, transformers 5.25.0"``: the words reports use (default: installed)."""
    return f"{mapping or installed_mapping()} mapping, transformers {transformers_version()}"


def straddles(tokenizer, text: str, ids: Sequence[int], offsets: Sequence[Span], spans: Sequence[Span],
              mask: Sequence[int]) -> list[Straddle]:
    """The tokens straddling an edge of the union of ``spans`` (:func:`classify_tokens`), each with
    its text, its edges (``"start"``/``"end"`` of a span) and whether ``mask`` trains it.

    Args:
        tokenizer: for the vocabulary entry of each token (``convert_ids_to_tokens``).
        text: the text the offsets refer to. ids, offsets, mask: per token (offsets in characters).
        spans: generation spans, characters of ``text``.
    """
    runs = merge_spans(spans)
    out = []
    for t, state in enumerate(classify_tokens(offsets, spans)):
        if state != STRADDLING:
            continue
        a, b = offsets[t]
        edges = sorted([(r0, "start") for r0, _ in runs if a < r0 < b] + [(r1, "end") for _, r1 in runs if a < r1 < b])
        out.append(Straddle(t, (a, b), text[a:b], tokenizer.convert_ids_to_tokens(int(ids[t])), tuple(edges), bool(mask[t])))
    return out


def trained_mask(tokenizer, text: str, spans: Sequence[Span], sanitized: bool = False) -> TrainedMask:
    """The per-token mask the installed transformers trains for one rendering, and its straddling tokens.

    The API for callers that have a rendering (``tmplc audit``, the proof's fast path): no
    template, no messages. ``apply_chat_template`` is called on a template that writes exactly
    ``text`` with exactly ``spans`` as generation blocks, so the mask is the installed version's
    own. Spans a template cannot have rendered in that order (overlapping or out of order) and
    ``sanitized`` renderings (transformers refuses ``sanitize_control_tokens=True`` with
    ``return_assistant_tokens_mask=True``) get :func:`mirror_mask` of :func:`installed_mapping`.

    Args:
        tokenizer: a fast tokenizer (:func:`load_tokenizer`).
        text: the rendered conversation (characters). With ``sanitized``: rendered from inputs
            marked by :func:`sanitized_inputs`, transformers' private-use markers included.
        spans: its generation spans ``[start, end)``, characters of ``text``, in render order (as
            :func:`tmplc.render.render` and transformers' ``generation_indices`` give them).
        sanitized: encode as ``apply_chat_template(..., sanitize_control_tokens=True)`` does
            (:func:`sanitized_encoding`: marked control tokens become plain-text tokens).

    Returns:
        :class:`TrainedMask` (``ids``/``offsets``/``mask`` per token; ``spans`` and offsets in
        characters of ``TrainedMask.text``).

    Raises:
        SanitizeUnsupported: ``sanitized`` with a transformers that has no
            ``sanitize_control_tokens`` or whose mapping is ``"unknown"``.
        OverflowError: an empty span at character 0 under ``char_to_token`` (transformers raises too).
        ValueError: a token transformers cannot encode as text under ``sanitized``.
    """
    mapping = installed_mapping()
    if sanitized:
        if mapping == UNKNOWN:
            raise SanitizeUnsupported(f"sanitize_control_tokens: no mirror of the span mapping of transformers "
                                      f"{transformers_version()}")
        text, spans, ids, offsets = sanitized_encoding(tokenizer, text, spans)
        mask, method = mirror_mask(mapping, offsets, spans), "mirror"
    elif _in_render_order(spans, len(text)):
        ids, offsets, mask = _called(tokenizer, text, spans)
        method = "apply_chat_template"
    else:
        if mapping == UNKNOWN:
            raise ValueError("spans out of render order and no mirror of this transformers' span mapping")
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        mask, method = mirror_mask(mapping, offsets, spans), "mirror"
    return TrainedMask(mapping, method, text, tuple(spans), tuple(map(int, ids)), tuple(offsets), tuple(mask),
                       tuple(straddles(tokenizer, text, ids, offsets, spans, mask)))


# ----------------------------------------------------------------------------- sanitize_control_tokens

def sanitized_inputs(tokenizer, chat_template: str, messages: list[dict], tools: list[dict] | None = None,
                     documents: list[dict] | None = None, kwargs: dict[str, Any] | None = None):
    """The inputs as ``apply_chat_template(..., sanitize_control_tokens=True)`` hands them to the
    template: every control token inside a string value of ``messages``, ``tools``, ``documents``
    and the caller's template ``kwargs`` (not the tokenizer's special tokens, not dict keys) wrapped
    in transformers' private-use markers ``U+F0000``/``U+F0001``. Control tokens: the tokenizer's
    special tokens, plus ``tokenizer.chat_control_tokens`` when set, else the added tokens that occur
    in the template's literal text (not whitespace ones). transformers' own function does it
    (``_mark_chat_inputs``, transformers ≥ 5.20).

    Returns:
        ``(messages, tools, documents, kwargs)``, new objects.

    Raises:
        SanitizeUnsupported: the installed transformers has no ``sanitize_control_tokens``.
    """
    mark = getattr(tokenizer, "_mark_chat_inputs", None)
    if mark is None:
        raise SanitizeUnsupported(f"transformers {transformers_version()} has no sanitize_control_tokens")
    chats, tools, documents, kwargs = mark(chat_template, [messages], tools, documents, dict(kwargs or {}), True, False)
    return chats[0], tools, documents, kwargs


def _decoded_offsets(tokenizer, ids: Sequence[int], piece: str) -> list[Span]:
    """Character offsets in ``piece`` of ``ids`` (its plain-text encoding, which has no offsets):
    each token ends where the decoded prefix ends; the byte tokens of one character all get that
    character (as ``offset_mapping`` gives them); the whole piece when decoding does not rebuild it."""
    out: list[Span] = []
    pending, prev = 0, 0
    for j in range(len(ids)):
        pending += 1
        decoded = tokenizer.decode(list(ids[: j + 1]), clean_up_tokenization_spaces=False)
        if piece.startswith(decoded) and len(decoded) > prev:
            out += [(prev, len(decoded))] * pending  # tokens completing characters together share them
            pending, prev = 0, len(decoded)
    if pending or prev != len(piece):
        return [(0, len(piece))] * len(ids)
    return out


def sanitized_encoding(tokenizer, marked: str, spans: Sequence[Span]) -> tuple[str, list[Span], list[int], list[Span]]:
    """Encode a rendering of marked inputs (:func:`sanitized_inputs`) as transformers'
    ``encode_marked_chat`` does, with offsets: the text between markers is encoded normally (each
    piece after the first behind a ``"\\n"`` that is then dropped, as transformers does), a marked
    control token as plain text (``split_special_tokens=True``), a lone marker dropped (it still
    breaks the text). transformers returns no offsets for this encoding: a marked token's are
    rebuilt by decoding (:func:`_decoded_offsets`); the ids are checked against
    ``apply_chat_template(..., sanitize_control_tokens=True)`` by :func:`check_tokens`.

    Args:
        marked: the rendering, markers included. spans: generation spans, characters of ``marked``.

    Returns:
        ``(text, spans, ids, offsets)``: ``text`` is ``marked`` without markers; ``spans`` and the
        per-token ``offsets`` are characters of ``text``.

    Raises:
        SanitizeUnsupported: the installed transformers has no ``sanitize_control_tokens``.
        ValueError: a control token the tokenizer produces from its plain text (transformers raises
            the same).
    """
    try:
        from transformers.utils.chat_template_utils import _get_control_token_patterns
    except ImportError:
        raise SanitizeUnsupported(f"transformers {transformers_version()} has no sanitize_control_tokens") from None
    _, markers_re = _get_control_token_patterns(tuple(tokenizer.added_tokens_encoder))
    newline = tokenizer.encode("\n", add_special_tokens=False)
    kept: list[int] = []  # marked index of each character of the unmarked text
    ids: list[int] = []
    offsets: list[Span] = []

    def encode(piece: str, start: int, as_text: bool, first: bool) -> None:
        if as_text:  # transformers' own plain-text encoding (fast tokenizers: the pipeline without added tokens)
            p_ids = tokenizer._encode_without_added_tokens("\n" + piece)
            p_ids = p_ids[len(newline):] if p_ids[: len(newline)] == newline else tokenizer._encode_without_added_tokens(piece)
            if tokenizer.convert_tokens_to_ids(piece) in p_ids:
                raise ValueError(f"Can't sanitize {piece!r}: the tokenizer produces it from plain text")
            p_off = _decoded_offsets(tokenizer, p_ids, piece)
        else:
            enc = tokenizer(piece if first else "\n" + piece, add_special_tokens=False, return_offsets_mapping=True)
            p_ids, p_off, shift = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]], 0
            if not first and p_ids[: len(newline)] == newline:
                p_ids, p_off, shift = p_ids[len(newline):], p_off[len(newline):], 1
            elif not first:
                enc = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
                p_ids, p_off = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
            p_off = [(max(a - shift, 0), max(b - shift, 0)) for a, b in p_off]
        ids.extend(p_ids)
        offsets.extend((a + start, b + start) for a, b in p_off)

    pos, first = 0, True
    for m in markers_re.finditer(marked):
        if first or m.start() > pos:
            encode(marked[pos:m.start()], len(kept), False, first)
            kept.extend(range(pos, m.start()))
            first = False
        token = m.group(1)
        if token:  # a marked control token (a lone marker is None: dropped)
            encode(token, len(kept), True, False)
            kept.extend(range(m.start(1), m.end(1)))
        pos = m.end()
    if first or pos < len(marked):
        encode(marked[pos:], len(kept), False, first)
        kept.extend(range(pos, len(marked)))
    text = "".join(marked[i] for i in kept)
    new = [bisect.bisect_left(kept, c) for c in range(len(marked) + 1)]  # marked index -> unmarked index
    return text, [(new[a], new[b]) for a, b in spans], ids, offsets


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
                    input_ids: Sequence[int] | None = None, stop_check: bool = True, sanitized: bool = False) -> TokenReport:
    """Token-level check of one rendering that is already done.

    Args:
        tokenizer: a fast tokenizer (:func:`load_tokenizer`).
        text: the rendered conversation (with ``sanitized``: rendered from marked inputs,
            :func:`sanitized_inputs`).
        spans: its ``{% generation %}`` spans, characters of ``text``, in render order (as
            :func:`tmplc.render.render` returns them).
        assistant_mask: the mask training uses (``apply_chat_template(...)["assistant_masks"]``);
            default: :func:`trained_mask` (the installed transformers' own mapping).
        input_ids: the ids training uses; when given they must equal the tokenization tmplc
            computes for ``text``.
        stop_check: run the stop-token check (needs ``decode`` of a few tokens).
        sanitized: tokenize as ``sanitize_control_tokens=True`` does (:func:`sanitized_encoding`);
            not with ``assistant_mask`` (transformers computes no mask then).

    Returns:
        :class:`TokenReport` (counts in tokens; ``mapping`` the installed one).

    Raises:
        RenderingMismatch: ``input_ids`` differ from the tokenization of ``text``.
        ValueError: the mask has the wrong length; ``assistant_mask`` with ``sanitized``.
        SanitizeUnsupported: see :func:`trained_mask`.
    """
    if assistant_mask is None:
        tm = trained_mask(tokenizer, text, spans, sanitized)
        text, spans, ids, offsets, mask = tm.text, tm.spans, list(tm.ids), list(tm.offsets), list(tm.mask)
        found = list(tm.straddles)
    elif sanitized:
        raise ValueError("transformers computes no assistant mask with sanitize_control_tokens")
    else:
        enc = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)  # what tokenizer(text) runs
        ids, offsets, mask = enc.ids, enc.offsets, list(assistant_mask)
        if len(mask) != len(ids):
            raise ValueError(f"assistant mask has {len(mask)} entries for {len(ids)} tokens")
        found = straddles(tokenizer, text, ids, offsets, spans, mask)
    if input_ids is not None and list(map(int, input_ids)) != list(ids):
        raise RenderingMismatch("apply_chat_template tokenized a different text than tmplc rendered "
                                f"({len(input_ids)} vs {len(ids)} tokens)")
    states = classify_tokens(offsets, spans)
    end_tokens = _open_end(offsets, spans, len(text))
    lost = [t for t, s in enumerate(states) if s == IN and not mask[t] and t not in end_tokens]
    open_end = sum(1 for t in end_tokens if not mask[t])
    added = [t for t, s in enumerate(states) if s == OUT and mask[t]]
    detail = ""
    if lost:
        detail = f"{len(lost)} token(s) inside a generation span not masked; first: " + _describe(tokenizer, ids, offsets, text, lost[0])
    elif added:
        detail = f"{len(added)} token(s) outside every generation span masked; first: " + _describe(tokenizer, ids, offsets, text, added[0])
    sdetail = ""
    if found:
        trained = sum(1 for s in found if s.trained)
        sdetail = (f"{len(found)} token(s) straddle a span edge, {trained} trained ({installed_mapping()} mapping); "
                   f"first: {found[0].describe()}")
    stop = _stop_check(tokenizer, ids, mask, offsets, merge_spans(spans), text) if stop_check else (None, None, False)
    return TokenReport(len(ids), sum(1 for m in mask if m), sum(1 for s in states if s == IN), len(lost), len(added),
                       len(found), open_end, stop[0], stop[1], stop[2], detail, sdetail, installed_mapping(), tuple(found))


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


def _render_sanitized(tokenizer, template, source: str, case: Case) -> tuple[str, list[Span]]:
    """Render ``case`` from inputs marked as ``sanitize_control_tokens=True`` marks them (the
    case's kwargs are marked, the tokenizer's special tokens are not, as in transformers)."""
    messages, tools, _, kwargs = sanitized_inputs(tokenizer, source, case.messages, case.tools, None, case.kwargs)
    return render(template, messages, tools, add_generation_prompt=case.full_agp,
                  **{**tokenizer.special_tokens_map, **kwargs})


def check_tokens(tokenizer, training_source: str, case: Case, sanitize_control_tokens: bool = False) -> TokenReport:
    """Token-level check of one conversation through the real ``apply_chat_template``.

    Calls ``tokenizer.apply_chat_template(case.messages, tools=case.tools,
    chat_template=training_source, add_generation_prompt=case.full_agp, tokenize=True,
    return_dict=True, return_assistant_tokens_mask=True, **case.kwargs)`` for the ids and the mask
    training uses, renders independently with :func:`tmplc.render.render` for the text and the
    generation spans (same normalization and special-token kwargs as transformers), tokenizes that
    text with offsets, and compares (see :func:`check_rendering`).

    With ``sanitize_control_tokens`` transformers refuses ``return_assistant_tokens_mask``: the ids
    come from ``apply_chat_template(..., sanitize_control_tokens=True)``, the text and spans from
    rendering the marked inputs (:func:`sanitized_inputs`), the mask from :func:`trained_mask`
    (the installed mapping on the sanitized tokens), and the ids must agree.

    Args:
        tokenizer: a fast tokenizer (:func:`load_tokenizer`), loaded once by the caller.
        training_source: the training template (with ``{% generation %}`` markers).
        case: a :class:`tmplc.conversations.Case`; use :func:`plain` for a case without sentinels.
        sanitize_control_tokens: as ``apply_chat_template``'s option (control tokens in the
            inputs become plain text).

    Returns:
        :class:`TokenReport` (counts in tokens).

    Raises:
        Whatever the template raises (``jinja2.TemplateError``...) on the conversation;
        :class:`RenderingMismatch` when transformers tokenized a different text than tmplc rendered;
        :class:`SanitizeUnsupported`.
    """
    messages = case.messages  # both sides drop None-valued keys (tmplc.render.drop_none)
    call = dict(tools=case.tools, chat_template=training_source, add_generation_prompt=case.full_agp,
                tokenize=True, return_dict=True)
    if sanitize_control_tokens:
        out = tokenizer.apply_chat_template(messages, sanitize_control_tokens=True, **call, **case.kwargs)
        text, spans = _render_sanitized(tokenizer, training_source, training_source, case)
        return check_rendering(tokenizer, text, spans, input_ids=out["input_ids"], sanitized=True)
    out = tokenizer.apply_chat_template(messages, return_assistant_tokens_mask=True, **call, **case.kwargs)
    text, spans = render(training_source, messages, case.tools, add_generation_prompt=case.full_agp,
                         **template_kwargs(tokenizer, case))
    return check_rendering(tokenizer, text, spans, out["assistant_masks"], out["input_ids"])


def check_case_tokens(tokenizer, training_source, case: Case, sanitize_control_tokens: bool = False,
                      chat_template: str | None = None) -> TokenReport:
    """Per-case check for a verification core: one render (:func:`tmplc.render.render`, so
    ``training_source`` may be compiled by :func:`tmplc.render.compile_template`) and the mask of
    :func:`trained_mask` (the installed transformers' own), without rendering through transformers.

    Args, returns and raises as :func:`check_tokens`; ``chat_template``: the source naming the
    control tokens with ``sanitize_control_tokens`` (default ``training_source``, which must then
    be a string).
    """
    if sanitize_control_tokens:
        text, spans = _render_sanitized(tokenizer, training_source, chat_template or training_source, case)
    else:
        text, spans = render(training_source, case.messages, case.tools, add_generation_prompt=case.full_agp,
                             **template_kwargs(tokenizer, case))
    return check_rendering(tokenizer, text, spans, sanitized=sanitize_control_tokens)


def with_control_tokens(case: Case, token: str) -> Case:
    """``case`` with ``token`` (a control token, e.g. ``<|im_end|>``) appended to every string
    ``content`` and every text block: what ``sanitize_control_tokens`` exists for (a user or a
    model writing a control token as text)."""

    def add(content: Any) -> Any:
        if isinstance(content, str):
            return content + " " + token
        if isinstance(content, list):
            return [{**b, "text": b["text"] + " " + token} if isinstance(b, dict) and isinstance(b.get("text"), str) else b
                    for b in content]
        return content

    messages = [{**m, "content": add(m["content"])} if "content" in m else dict(m) for m in case.messages]
    return Case(messages, case.tools, dict(case.kwargs), case.add_generation_prompt)


class TokenChecker:
    """The token-level check the verification core runs on every conversation of a proof
    (:func:`tmplc.verification.check_renderings`), with one tokenizer loaded once.

    For a conversation it checks the rendering the proof already has (with sentinels) and the
    :func:`plain` rendering of the same conversation (sentinels end every field with ``»``, which
    hides a span edge inside the field's last character). The mask is the installed
    transformers' own (:func:`trained_mask`; the mapping is :func:`installed_mapping`).

    With ``sanitize_control_tokens`` every form is rendered from inputs marked as transformers
    marks them and tokenized as it tokenizes them (:func:`sanitized_encoding`), and a third form
    is checked: the plain conversation with the tokenizer's first control token written in every
    content (:func:`with_control_tokens`).

    Args:
        tokenizer: a fast tokenizer (:func:`load_tokenizer`).
        sanitize_control_tokens: check as ``apply_chat_template(..., sanitize_control_tokens=True)``.
        chat_template: the template source whose literal text names the control tokens (what
            transformers reads unless ``tokenizer.chat_control_tokens`` is set); needed with
            ``sanitize_control_tokens`` (the original or the training template: the same literals).

    Raises:
        ValueError: ``sanitize_control_tokens`` without ``chat_template``.
        SanitizeUnsupported: ``sanitize_control_tokens`` with a transformers that has no such option.
    """

    def __init__(self, tokenizer, sanitize_control_tokens: bool = False, chat_template: str | None = None):
        self.tokenizer = tokenizer
        self.sanitize_control_tokens = sanitize_control_tokens
        self.chat_template = chat_template
        self.control_token = None
        if sanitize_control_tokens:
            if chat_template is None:
                raise ValueError("sanitize_control_tokens needs the template source (chat_template=)")
            sanitized_inputs(tokenizer, chat_template, [])  # SanitizeUnsupported now, not in the proof
            controls = tokenizer._get_control_tokens(chat_template)
            self.control_token = controls[0] if controls else None

    def __call__(self, template, case: Case, text: str, spans: Sequence[Span]) -> list[TokenReport]:
        """Reports (counts in tokens) for ``text``/``spans`` (characters; the training template's
        rendering of ``case``), for the plain form of ``case`` and, with ``sanitize_control_tokens``,
        for the plain form with control tokens; a form the template refuses is skipped."""
        if not self.sanitize_control_tokens:
            reports = [check_rendering(self.tokenizer, text, spans)]
            p = plain(case)
            try:
                plain_text, plain_spans = render(template, p.messages, p.tools, add_generation_prompt=p.full_agp, **p.kwargs)
            except Exception:  # noqa: BLE001 - a template that refuses the plain form: nothing more to check
                return reports
            reports.append(check_rendering(self.tokenizer, plain_text, plain_spans))
            return reports
        forms = [case, plain(case)]
        if self.control_token is not None:
            forms.append(with_control_tokens(forms[1], self.control_token))
        reports = []
        for i, form in enumerate(forms):
            try:
                reports.append(check_case_tokens(self.tokenizer, template, form, True, self.chat_template))
            except (RenderingMismatch, SanitizeUnsupported):
                raise
            except Exception:  # noqa: BLE001 - the template refuses this form (the proof itself renders the first)
                if i == 0:
                    raise
        return reports


__all__ = [
    "CHAR_TO_TOKEN", "MAPPINGS", "OVERLAP", "UNKNOWN", "RenderingMismatch", "SanitizeUnsupported", "Straddle",
    "TokenChecker", "TokenReport", "TrainedMask", "char_to_token_of", "check_case_tokens", "check_rendering",
    "check_tokens", "classify_tokens", "describe_mapping", "installed_mapping", "load_tokenizer", "mirror_mask",
    "plain", "sanitized_encoding", "sanitized_inputs", "straddles", "strip_sentinels", "template_kwargs",
    "trained_mask", "transformers_version", "with_control_tokens",
]
