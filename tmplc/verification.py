"""The one verification core: render a conversation, compare two renderings, compare masks.

Every check tmplc makes goes through here, with one exception policy: an exception raised by a
template (any ``Exception``: ``TemplateError``, ``TypeError`` from ``'a' + None``...) is an
*outcome* (:class:`Raised`, its type name and message), compared like text. Used by locate (the
oracle of each probe), the proof (:mod:`tmplc.prove`), the lint rules and the tests.

* :func:`same_rendering` — two templates render every prefix of a conversation, with and without
  the generation prompt, identically (or raise identically);
* :func:`mask_diff` — a rendering's generation spans against the oracle's expected masks, per
  turn, naming the template node that wrote each wrong character;
* :func:`check_case` — both, plus the oracle, for one conversation: what the proof and the mask
  rules ask.

Offsets are characters of the rendered text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .conversations import Case, Span, field_spans, readable
from .oracle import Oracle, Problem, appended, expected_masks, generation_prompt, lcp, with_appended_stop
from .render import merge_spans, render_located
from .tokens import TokenChecker, TokenReport
from .trace import Instrumented, TraceError, read_trace


@dataclass(frozen=True)
class Rendered:
    """A rendering: ``text``, the ``{% generation %}`` spans in the order they were rendered, and
    for each span the source-order index of its tag (:func:`tmplc.render.render_located`; lint
    rules point at the block with :attr:`tmplc.rules.base.Context.generation_tags`)."""

    text: str
    spans: tuple[Span, ...] = ()
    blocks: tuple[int, ...] = ()


@dataclass(frozen=True)
class Raised:
    """A template that raised: the exception's type name and message."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


Outcome = Rendered | Raised


class TemplateRaised(Exception):
    """Raised by :meth:`Renderings.text` where the template raised (the oracle's render callback)."""


def outcome(template: Any, case: Case, messages: list[dict] | None = None, agp: bool | None = None) -> Outcome:
    """Render ``messages`` (default: the whole conversation) of ``case`` with ``template``.

    Args:
        template: a compiled template (:func:`tmplc.render.compile_template`) or its source.
        case: the conversation with its tools and kwargs.
        agp: the generation-prompt flag (default: :attr:`Case.full_agp`).

    Returns:
        :class:`Rendered` or :class:`Raised`; never raises for a template error.
    """
    try:
        text, spans, blocks = render_located(template, case.messages if messages is None else messages, case.tools,
                                          add_generation_prompt=case.full_agp if agp is None else agp, **case.kwargs)
    except Exception as exc:  # noqa: BLE001 - one exception policy: a template error is an outcome
        return Raised(type(exc).__name__, str(exc))
    return Rendered(text, tuple(spans), tuple(blocks))


class Renderings:
    """Memoised renderings of the prefixes of one conversation by one template.

    ``get(k, agp)`` renders ``case.messages[:k]`` once per flag. Oracle callbacks take message
    lists; every list the oracle asks for is a prefix, identified by its length.

    Args:
        template: a compiled template (or its source).
        case: the conversation.
        memo: a dict shared by the Renderings of one template across many conversations (the
            proof's hypothesis examples share about 40% of their prefixes); keys are the JSON of
            the prefix's messages, tools, kwargs and flag, keys in their order (a template may
            write a message's keys in order; conversations built elsewhere, the probes and the
            drawn ones, share a memo, :attr:`tmplc.analysed.Analysed.renderings`).
    """

    def __init__(self, template: Any, case: Case, memo: dict | None = None, policy: str = "as-rendered"):
        self.template = template
        self.case = case
        self.policy = policy  # the masking policy of the oracle (tmplc.oracle.POLICIES)
        self._cache: dict[tuple[int, bool], Outcome] = {}
        self._memo = memo
        self._keys: list[str] = []
        self._context = ""

    def _memo_key(self, k: int, agp: bool) -> tuple:
        if not self._keys:
            dump = lambda value: json.dumps(value, ensure_ascii=False, default=repr)  # noqa: E731
            self._keys = [dump(m) for m in self.case.messages]
            self._context = dump([self.case.tools, self.case.kwargs])
        return (self._context, agp, *self._keys[:k])

    def get(self, k: int, agp: bool) -> Outcome:
        key = (k, agp)
        out = self._cache.get(key)
        if out is None:
            if self._memo is None:
                out = outcome(self.template, self.case, self.case.messages[:k], agp)
            else:
                shared = self._memo_key(k, agp)
                out = self._memo.get(shared)
                if out is None:
                    out = outcome(self.template, self.case, self.case.messages[:k], agp)
                    self._memo[shared] = out
            self._cache[key] = out
        return out

    def full(self) -> Outcome:
        """The full rendering (the generation prompt as :attr:`Case.full_agp`)."""
        return self.get(len(self.case.messages), self.case.full_agp)

    def text(self, messages: list[dict], agp: bool) -> str:
        """Text of a prefix (memoised) or of another message list, for :func:`tmplc.oracle.expected_masks`.

        Raises:
            TemplateRaised: the template raised on that prefix.
        """
        k = len(messages)
        if messages != self.case.messages[:k]:  # not a prefix (the oracle's probe after a final turn)
            out = outcome(self.template, self.case, messages, agp)
        else:
            out = self.get(k, agp)
        if isinstance(out, Raised):
            raise TemplateRaised(str(out))
        return out.text

    def oracle(self) -> Oracle | None:
        """The oracle's expected masks, or None when the template raises on a prefix it needs."""
        try:
            return expected_masks(self.text, self.case, self.policy)
        except TemplateRaised:
            return None


@dataclass(frozen=True)
class RenderDiff:
    """The first rendering where two templates differ."""

    messages: int  # the prefix length
    agp: bool
    a: Outcome
    b: Outcome
    why: str = ""  # what the difference breaks, when it is not "any difference" (history_only)

    def describe(self) -> str:
        def what(o: Outcome) -> str:
            return str(o) if isinstance(o, Raised) else "text"

        if self.why:
            return f"rendering of messages[:{self.messages}] (add_generation_prompt={self.agp}): {self.why}"
        return (f"rendering of messages[:{self.messages}] (add_generation_prompt={self.agp}) changed: "
                f"original gives {what(self.a)}, training gives {what(self.b)}")

    @property
    def first_difference(self) -> int:
        """Character offset of the first difference of two texts (0 when one raised)."""
        if isinstance(self.a, Raised) or isinstance(self.b, Raised):
            return 0
        x, y = self.a.text, self.b.text
        return next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))


def _same(a: Outcome, b: Outcome) -> bool:
    if isinstance(a, Rendered) and isinstance(b, Rendered):
        return a.text == b.text
    return a == b


def same_rendering(a: Renderings, b: Renderings, prefixes: bool = True, append: str = "") -> RenderDiff | None:
    """Compare two templates on one conversation (``a`` and ``b`` render the same case).

    Args:
        prefixes: compare every prefix ``messages[:k]``, each with and without the generation
            prompt (the proof); False: the full conversation with its own flag only.
        append: ``--append-stop``'s text: where ``messages[:k]`` ends with an assistant message
            and there is no generation prompt, ``b`` must render ``a``'s text with ``append``
            inserted once after the last message's fields (TRL PR #6044), else identical.

    Returns:
        None when every rendering is identical text or the same raised error; else the first
        :class:`RenderDiff`.
    """
    n = len(a.case.messages)
    keys = [(k, agp) for k in range(1, n + 1) for agp in (False, True)] if prefixes else [(n, a.case.full_agp)]
    msgs = a.case.messages
    for k, agp in keys:
        x, y = a.get(k, agp), b.get(k, agp)
        if append and not agp and msgs[k - 1].get("role") == "assistant" and isinstance(x, Rendered) \
                and isinstance(y, Rendered):
            fields = field_spans(x.text).get(k - 1, [])
            if appended(x.text, y.text, append, max((e for _, e in fields), default=0)):
                continue
        if not _same(x, y):
            return RenderDiff(k, agp, x, y)
    return None


def history_only(source: Renderings, changed: Renderings) -> RenderDiff | None:
    """``--prefix-preserving``: ``changed`` renders every prefix of the conversation like
    ``source`` except inside the turns of history assistant messages (``changed``'s own oracle
    places them: every assistant turn but a final one rendered without the generation prompt).

    Compared like :func:`same_rendering`, on every prefix with and without the generation prompt
    (a prefix ending with an assistant message only without it, as a conversation is rendered);
    where ``source`` raises there is nothing to compare. ``source``'s text must be ``changed``'s
    with each history turn replaced by some text that holds that message's fields as ``source``
    renders them.

    Returns:
        None, or the first :class:`RenderDiff` (``why`` says which turn or text differs).
    """
    msgs = changed.case.messages
    for k in range(1, len(msgs) + 1):
        for agp in (False, True):
            if agp and msgs[k - 1].get("role") == "assistant":
                continue
            x, y = source.get(k, agp), changed.get(k, agp)
            if isinstance(x, Raised) or _same(x, y):
                continue
            if isinstance(y, Raised):
                return RenderDiff(k, agp, x, y)
            case = Case(msgs[:k], changed.case.tools, changed.case.kwargs, agp)
            oracle = Renderings(changed.template, case, changed._memo).oracle()
            if oracle is None or oracle.problems:
                return RenderDiff(k, agp, x, y, "the rendering changed, and its history turns cannot be placed")
            assert isinstance(x, Rendered)
            why = _outside_turns(x.text, y.text, _with_cues(changed, oracle, k - 1 if not agp else -1))
            if why:
                return RenderDiff(k, agp, x, y, why)
    return None


def _with_cues(r: Renderings, oracle: Oracle, final: int) -> list[tuple[Span, int]]:
    """The history turns of ``oracle`` (all but ``final``), each with its cue: the part of its
    generation prompt ``G_i = render(C[:i], True) - render(C[:i])`` that the rendering shares
    right before it (a
    rewrite may change what the template writes as the cue of a history turn: Qwen3's empty think
    block with ``enable_thinking=False``)."""
    out = []
    y = oracle.text
    for i, (a, b) in sorted(oracle.turns.items()):
        if i == final:
            continue
        p, q = r.get(i, True), r.get(i, False)
        cue = 0
        if isinstance(p, Rendered) and isinstance(q, Rendered):
            g = generation_prompt(p.text, q.text)
            cue = next((n for n in range(min(len(g), a), 0, -1) if y[a - n : a] == g[:n]), 0)
        out.append(((a - cue, b), i))
    return sorted(out)


def _outside_turns(x: str, y: str, holes: list[tuple[Span, int]]) -> str:
    """Why ``x`` is not ``y`` with the ``holes`` (history turns) replaced, or ""."""
    edges = [0] + [p for (a, b), _ in holes for p in (a, b)] + [len(y)]
    pieces = [y[edges[2 * j] : edges[2 * j + 1]] for j in range(len(holes) + 1)]
    if not x.startswith(pieces[0]):
        return f"changed before the first history turn, at {lcp(x, pieces[0])}: {readable(x[lcp(x, pieces[0]):])[:40]!r}"
    pos = len(pieces[0])
    fx = field_spans(x)
    for j, ((_, _), i) in enumerate(holes):
        piece, last = pieces[j + 1], j == len(holes) - 1
        lo = max([pos] + [b for _, b in fx.get(i, [])])
        found = (len(x) - len(piece) if x.endswith(piece) and len(x) - len(piece) >= lo else -1) if last \
            else x.find(piece, lo)
        if found < 0:
            return f"changed outside the history turns, after assistant message {i}'s turn: {readable(piece)[:40]!r}"
        pos = found + len(piece)
    return ""


class DefectKind(str, Enum):
    """What a wrong mask character is: see :func:`mask_diff`."""

    CUE = "cue"  # masked prompt text right before a turn (the generation prompt)
    OTHER_ROLE = "other-role"  # masked text outside every assistant turn
    STOP_TOKEN = "stop-token"  # unmasked text at the end of a turn (the stop)
    FIELD = "field"  # unmasked generated text inside a turn
    TOUCHING = "touching"  # two generation spans meet right after a multi-byte character
    EMPTY = "empty"  # a generation block rendered nothing: an empty span (start == end)


@dataclass(frozen=True)
class MaskDefect:
    """A run of characters masked wrongly: ``span`` in the rendering, ``turn`` the assistant
    message index (-1: none), ``node`` the source offset of the template node that wrote it
    (None without a trace)."""

    kind: DefectKind
    span: Span
    turn: int
    text: str
    node: int | None = None

    @property
    def missing(self) -> bool:
        """Expected but not masked (as opposed to masked but not expected)."""
        return self.kind in (DefectKind.STOP_TOKEN, DefectKind.FIELD)

    @property
    def junction(self) -> bool:
        """Masks are right but two spans meet (:func:`touching`), not a wrong character."""
        return self.kind == DefectKind.TOUCHING

    @property
    def empty(self) -> bool:
        """Masks are right but a span is empty (:func:`empty_spans`), not a wrong character."""
        return self.kind == DefectKind.EMPTY


def mask_of(spans: tuple[Span, ...] | list[Span]) -> set[int]:
    """Character offsets covered by ``spans``."""
    return {c for a, b in spans for c in range(a, b)}


def runs(chars: list[int]) -> list[Span]:
    """Maximal runs of consecutive offsets of a sorted list, as half-open spans."""
    out: list[list[int]] = []
    for c in chars:
        if out and c == out[-1][1]:
            out[-1][1] = c + 1
        else:
            out.append([c, c + 1])
    return [(a, b) for a, b in out]


def mask_diff(expected: Oracle, spans: tuple[Span, ...] | list[Span], owner: dict[int, int] | None = None) -> list[MaskDefect]:
    """Compare generation ``spans`` of ``expected.text`` with the oracle's masks, run by run.

    A masked run that ends where a turn starts is the turn's cue; any other masked run outside
    the expected mask belongs to another role. An unmasked run of a turn that reaches the turn's
    end is its stop; any other is a field. ``owner`` maps a character offset to the source offset
    of the node that wrote it (:func:`owners`).
    """
    actual, want = mask_of(spans), expected.mask()
    text, owner = expected.text, owner or {}
    out: list[MaskDefect] = []
    for a, b in runs(sorted(actual - want)):
        turn = next((i for i, (s, _) in expected.turns.items() if b == s), None)
        kind = DefectKind.CUE if turn is not None else DefectKind.OTHER_ROLE
        out.append(MaskDefect(kind, (a, b), -1 if turn is None else turn, text[a:b], owner.get(a)))
    for a, b in runs(sorted(want - actual)):
        turn = next((i for i, (s, e) in expected.turns.items() if s <= a < e), -1)
        end = expected.turns.get(turn, (0, 0))[1]
        kind = DefectKind.STOP_TOKEN if b == end else DefectKind.FIELD
        out.append(MaskDefect(kind, (a, b), turn, text[a:b], owner.get(a)))
    return out


def touching(text: str, spans: tuple[Span, ...] | list[Span], owner: dict[int, int] | None = None) -> list[MaskDefect]:
    """Places where one generation span ends and the next one starts, right after a character
    that is more than one byte in UTF-8.

    transformers ≤ 5.23 maps a span to tokens with ``char_to_token`` at its first and last character
    (:data:`tmplc.tokens.CHAR_TO_TOKEN`), so a span ending in a character that a byte-level tokenizer
    splits into several tokens (an emoji, CJK extension B) keeps only the first of them; when the
    next span starts right there the rest are lost, although the union of the spans is the right
    mask. (From 5.24 every token overlapping a span is masked and nothing is lost; a training
    template must still be right under the older mapping, so the junction stays a defect.) Generated text that is contiguous
    in the rendering must be one block. After an ASCII character no token is lost, so only those
    junctions are defects. Empty spans are ignored (they cover nothing).

    Args:
        text: the rendering. spans: its generation spans, in characters of ``text``.
        owner: character offset → source offset of the node that wrote it (:func:`owners`).

    Returns:
        One :class:`MaskDefect` of kind ``touching`` per junction: ``span`` is the character before
        the junction and the one after it, ``text`` the 20 characters on each side.
    """
    owner = owner or {}
    live = sorted((a, b) for a, b in spans if a < b)
    out: list[MaskDefect] = []
    for (_, end), (start, _) in zip(live, live[1:]):
        if end == start and len(text[end - 1].encode("utf-8")) > 1:
            out.append(MaskDefect(DefectKind.TOUCHING, (end - 1, end + 1), -1, text[max(0, end - 20) : end + 20], owner.get(end - 1)))
    return out


def empty_spans(text: str, spans: tuple[Span, ...] | list[Span]) -> list[MaskDefect]:
    """Generation spans that cover no character: a ``{% generation %}`` block that rendered nothing.

    An empty span adds nothing to the character mask, but transformers does not ignore it.
    ``PreTrainedTokenizerBase.apply_chat_template(..., return_assistant_tokens_mask=True)``
    (transformers 5.23, ``tokenization_utils_base.py``) maps every span ``(start, end)`` of
    ``generation_indices`` to ``start_token = out.char_to_token(i, start)`` and ``end_token =
    out.char_to_token(i, end - 1)`` and masks ``range(start_token, end_token + 1 if end_token else
    len(input_ids))``; a None ``start_token`` stops all later spans. For ``start == end == s``:

    * ``s`` inside a token (characters ``s - 1`` and ``s`` in one token): that token is masked,
      though no character of it is generated (DeepSeek's ``<｜Assistant｜>`` + ``\n`` ends in one
      Qwen3 token ``>\n``);
    * ``s`` at a token boundary: nothing, unless the token before ``s`` is token 0 or the
      character before ``s`` maps to no token (``end_token`` 0 or None): then every token from
      ``s`` to the end of the sequence is masked;
    * ``s == 0``: ``char_to_token(-1)`` raises ``OverflowError`` in the Rust tokenizer;
    * ``s == len(text)``: ``start_token`` is None, nothing more is masked.

    Which case applies depends on the tokenizer, so the proof refuses an empty span wherever it
    can mask a token no span covers: a block that may render nothing goes inside the branches that
    write (:meth:`tmplc.plan.Planner._plan`). Three places are exempt: the end of the rendering
    (``start_token`` is None), the start of a non-empty span (a token around ``s`` is that
    span's first token, masked by it anyway; gemma-4 renders an assistant turn with empty content
    right before the next turn's block) and the end of one (a token around ``s`` holds that span's
    last character and is masked by it: a next-message marker moved into the previous turn leaves
    its original block empty right there, :mod:`tmplc.stops`). There only ``end_token`` 0 or None (the character before
    ``s`` in token 0 or in no token) can still widen the mask; the token-level proof
    (:class:`tmplc.tokens.TokenChecker`) sees that with a real tokenizer.
    (The ``overlap`` mapping of transformers ≥ 5.24, and the processor path,
    ``ProcessorMixin._adjust_assistant_masks_indices``, mask every token with ``token_start < end
    and token_end > start``: for an empty span, the token around ``s``; never a later one.)

    Args:
        text: the rendering. spans: its generation spans, in characters of ``text``.

    Returns:
        One :class:`MaskDefect` of kind ``empty`` per empty span not exempt: ``span`` is ``(s, s)``, ``text``
        the 20 characters on each side.
    """
    edges = {a for a, b in spans if a < b} | {b for a, b in spans if a < b}
    return [MaskDefect(DefectKind.EMPTY, (a, b), -1, text[max(0, a - 20) : a + 20])
            for a, b in spans if a == b and a < len(text) and a not in edges]


def owners(inst: Instrumented, case: Case, text: str) -> dict[int, int]:
    """Character offset of the full rendering → source offset of the node that wrote it, from a
    trace of the instrumented template; empty when the trace does not match ``text``."""
    try:
        raw = case.render(inst.compiled)[0]
        trace = read_trace(inst, raw)
    except (TraceError, Exception):  # noqa: BLE001 - no attribution, never a failure
        return {}
    if trace.text != text:
        return {}
    return {c: inst.sites[e.site].node.start for e in trace.emissions for c in range(e.start, e.end)}


def mark_spans(text: str, spans: list[Span], open_: str = "⟦", close: str = "⟧") -> str:
    """``text`` with each span wrapped in ``open_``/``close`` (for reports)."""
    out, prev = [], 0
    for a, b in sorted(spans):
        out += [text[prev:a], open_, text[a:b], close]
        prev = b
    out.append(text[prev:])
    return "".join(out)


@dataclass
class CaseCheck:
    """What :func:`check_case` found on one conversation.

    ``valid``: the original renders the full conversation; ``render_diff``: the training template
    renders some prefix differently; ``oracle``: the expected masks (None when a prefix raises);
    ``problem``: the oracle cannot give a correct mask; ``rendered``: the training template's
    full rendering; ``defects``: its mask errors.
    """

    valid: bool = False
    render_diff: RenderDiff | None = None
    oracle: Oracle | None = None
    problem: Problem | None = None
    rendered: Rendered | None = None
    defects: list[MaskDefect] = field(default_factory=list)
    tokens: list[TokenReport] = field(default_factory=list)  # token-level reports, with a tokenizer
    # --prefix-preserving: the rewritten original renders differently from the shipped template
    # outside history assistant turns (history_only), or history is not rendered as generated
    # (prefix_break with generated=True: the first assistant message that breaks it).
    history_diff: RenderDiff | None = None
    prefix_break: int | None = None

    @property
    def token_failure(self) -> TokenReport | None:
        """The first token report that loses or adds tokens."""
        return next((r for r in self.tokens if not r.ok), None)

    @property
    def ok(self) -> bool:
        return (self.render_diff is None and self.history_diff is None and self.prefix_break is None
                and self.problem is None and not self.defects and self.token_failure is None)

    def mask_message(self) -> str:
        """One line: how many characters are missing from and added to the mask, and where."""
        text = self.oracle.text if self.oracle else ""
        missing = sorted(c for d in self.defects if d.missing for c in range(*d.span))
        extra = sorted(c for d in self.defects if not d.missing and not d.junction for c in range(*d.span))
        what = [f"two generation spans touch at {d.span[0] + 1}, after a multi-byte character ({readable(d.text)!r}): "
                "transformers <= 5.23 (char_to_token mapping) drops that character's other tokens; contiguous "
                "generated text must be one block"
                for d in self.defects[:1] if d.junction]
        what += [f"a generation block renders nothing: empty span at {d.span[0]} ({readable(d.text)!r}); transformers masks "
                 "the token around it (<= 5.23: tokens char_to_token(start) to char_to_token(end - 1), at a token "
                 "boundary after token 0 every later token; >= 5.24: every token overlapping it): a block must not be "
                 "entered where it writes nothing" for d in self.defects[:1] if d.empty]
        if missing:
            what.append(f"{len(missing)} expected characters not masked (first at {missing[0]}: {readable(text[missing[0]:])[:20]!r})")
        if extra:
            what.append(f"{len(extra)} characters masked that the model does not generate (first at {extra[0]}: {readable(text[extra[0]:])[:20]!r})")
        return "; ".join(what)

    def mask_detail(self) -> str:
        """The rendering with expected and actual spans marked ⟦…⟧."""
        if self.oracle is None or self.rendered is None:
            return ""
        text = self.oracle.text
        return ("expected ⟦…⟧:\n" + mark_spans(text, list(self.oracle.turns.values()))
                + "\nactual ⟦…⟧:\n" + mark_spans(text, merge_spans(self.rendered.spans)))


def check_case(original: Any, training: Any, case: Case, memos: tuple[dict, ...] | None = None,
               tokens: TokenChecker | None = None, append: str = "", policy: str = "as-rendered",
               source: Any = None) -> CaseCheck:
    """Check one conversation: unchanged rendering, then masks against the oracle.

    Args:
        original: the shipped template, compiled. training: the template with markers, compiled.
        case: the conversation.
        memos: render memos of the two templates shared across conversations (see :class:`Renderings`).
        tokens: the token-level check (:class:`tmplc.tokens.TokenChecker`), run once the
            characters are right.
        append: ``--append-stop``'s text (see :func:`same_rendering`); the expected masks then
            cover it after a final turn without a stop (:func:`tmplc.oracle.with_appended_stop`).
        policy: the oracle's masking policy (:func:`tmplc.oracle.expected_masks`).
        source: ``--prefix-preserving``: the shipped template, ``original`` being its rewrite
            that renders history assistant turns as generated; the check then also asks that
            ``original`` renders like ``source`` outside history assistant turns
            (:func:`history_only`) and that ``training`` renders history as generated
            (:func:`prefix_break` with ``generated=True``). ``memos`` may hold a third memo for it.

    Returns:
        :class:`CaseCheck`; the first failing property stops the check.
    """
    a, b, c = (*memos, None)[:3] if memos else (None, None, None)
    return check_renderings(Renderings(original, case, a, policy), Renderings(training, case, b, policy),
                            tokens=tokens, append=append,
                            source=None if source is None else Renderings(source, case, c, policy))


def check_renderings(orig: Renderings, train: Renderings, owner: Callable[[str], dict[int, int]] | None = None,
                     tokens: TokenChecker | None = None, append: str = "",
                     source: Renderings | None = None) -> CaseCheck:
    """:func:`check_case` on renderings of one conversation; pass the same :class:`Renderings`
    twice to check a marked template's masks only (lint). ``owner`` maps the full rendering's
    characters to template nodes (:func:`owners`) for the defects; ``source`` is
    ``--prefix-preserving``'s shipped template (see :func:`check_case`)."""
    result = CaseCheck()
    if train is not orig:
        result.render_diff = same_rendering(orig, train, append=append)
        if result.render_diff is not None:
            return result
    if source is not None:
        result.history_diff = history_only(source, orig)
        if result.history_diff is None:
            result.prefix_break = prefix_break(train, generated=True)
        if result.history_diff is not None or result.prefix_break is not None:
            return result
    full = train.full()
    if isinstance(full, Raised):
        return result
    result.valid = True
    result.rendered = full
    result.oracle = orig.oracle()
    if result.oracle is None:
        return result
    if append and not result.oracle.problems:
        result.oracle = with_appended_stop(result.oracle, orig.case, append)
    if result.oracle.problems:
        result.problem = result.oracle.problems[0]
        return result
    if mask_of(full.spans) != result.oracle.mask():
        result.defects = mask_diff(result.oracle, full.spans, owner(full.text) if owner else None)
    else:
        result.defects = touching(full.text, full.spans)
        if result.defects and owner:
            result.defects = touching(full.text, full.spans, owner(full.text))
        result.defects += empty_spans(full.text, full.spans)
    if tokens is not None and not result.defects:
        result.tokens = tokens(train.template, train.case, full.text, full.spans)
    return result


def prefix_break(r: Renderings, generated: bool = False) -> int | None:
    """The first assistant message ``k`` whose generation prompt ``render(messages[:k],
    add_generation_prompt=True)`` is not a prefix of the full rendering (what incremental masking
    and RL rollouts assume), or None; None too when a rendering raises.

    ``generated`` (``--prefix-preserving``): instead, the first assistant message ``k`` before the
    last whose rendering as the last message, ``render(messages[:k+1])`` (the turn as generated,
    stop included), is not a prefix of the full rendering: history rendered as generated.
    """
    msgs = r.case.messages
    full = r.get(len(msgs), False)
    if isinstance(full, Raised):
        return None
    for k in range(1, len(msgs) - 1 if generated else len(msgs)):
        if msgs[k]["role"] == "assistant":
            head = r.get(k + 1, False) if generated else r.get(k, True)
            if isinstance(head, Raised):
                return None
            if not full.text.startswith(head.text):
                return k
    return None


__all__ = [
    "CaseCheck", "DefectKind", "MaskDefect", "Raised", "RenderDiff", "Rendered", "Renderings", "TemplateRaised",
    "check_case", "check_renderings", "empty_spans", "history_only", "mask_diff", "prefix_break", "mask_of",
    "mark_spans", "merge_spans", "outcome",
    "owners", "runs", "same_rendering", "touching",
]
