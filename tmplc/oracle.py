"""The mask oracle: which characters of a rendered conversation the model generates.

For assistant message ``i`` of a conversation ``C`` rendered as ``R`` (see
``../shared/design/README.md``, "The mask oracle"), the expected mask is ``[start, end)`` in
``R``, computed in the *full-render form*, which reduces to the strict form
``[len(P_i), E_i)`` whenever the template is prefix-preserving:

* ``start`` = end of message ``i-1`` in ``R`` + the part of the generation prompt
  ``G_i = P_i - render(C[:i])`` that ``R`` shares (DeepSeek-V3's ``<think>\\n`` that ``R``
  never shows is dropped; a half-matched special token is not shared);
* ``end`` = end of the last rendered field of message ``i`` in ``R`` + the terminator the
  template writes after that field when ``i`` is the last message, as far as ``R`` shares it
  (for the last message that is the end of ``R``, so a trailing eos is in).

The end of a message is found through the unique sentinels that wrap every field (see
:mod:`tmplc.conversations`), never through the code under test. A turn with no terminator
text before the next message (GLM's stop token lives in the next message) is reported as a
:class:`Problem`, never masked silently. Offsets are characters of ``R``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .conversations import Case, Span, field_spans, readable, wrap
from .reasons import Reason


@dataclass
class Problem:
    """The oracle cannot give a correct mask for a turn. ``code`` is a reason code."""

    code: Reason
    message: str
    turn: int


@dataclass
class Oracle:
    """Expected masks of one conversation: ``text`` is R, ``turns`` maps message index → span."""

    text: str
    turns: dict[int, Span]
    problems: list[Problem]
    fields: dict[int, list[Span]]  # message index → spans of its rendered fields in R
    unstopped: list[int] = field(default_factory=list)  # final turns whose template writes no stop
    markers: dict[int, str] = field(default_factory=dict)  # turn → the next message's marker ending it

    holes: list[Span] = field(default_factory=list)  # other messages' text inside a turn

    def mask(self) -> set[int]:
        inside = {c for a, b in self.holes for c in range(a, b)}
        return {c for a, b in self.turns.values() for c in range(a, b)} - inside


def lcp(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (characters)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def generation_prompt(prompted: str, plain: str) -> str:
    """``G_i = P_i - render(C[:i])``: what ``add_generation_prompt=True`` adds, ``prompted`` (the
    rendering with it) from where it parts from ``plain`` (without it), a half-matched special
    token included (:func:`cut_lcp`)."""
    return prompted[cut_lcp(plain, prompted):]


def cut_lcp(a: str, b: str) -> int:
    """:func:`lcp`, cut back so the common part does not end inside a half-matched special
    token (``</s>`` vs ``<|user|>`` share ``<``; ``[/INST]`` vs ``[INST]`` share ``[``)."""
    n = lcp(a, b)
    if n == len(a) or n == len(b):
        return n
    for opener, closer in (("<", ">"), ("[", "]")):
        p = a.rfind(opener, max(0, n - 48), n)
        if p >= 0 and closer not in a[p:n] and closer in a[n : n + 48] and closer in b[n : n + 48]:
            return p
    return n


def _field_end(spans: dict[int, list[Span]], index: int) -> int | None:
    s = spans.get(index)
    return max(b for _, b in s) if s else None


def _cue_end(R: str, fR: dict[int, list[Span]], i: int, e_prev: int, start: int, G: str) -> int:
    """Where turn ``i`` starts when the generation prompt ``G`` is not right after the previous
    message's end ``e_prev`` in ``R``: after the last occurrence of ``G`` (Hermes writes a tool
    result's end differently once an assistant follows), else of ``G`` without its surrounding
    whitespace (a template indents its own header differently from its generation prompt),
    before the turn's first field (or the next message's, for a turn that renders none)."""
    if not G or start - e_prev >= len(G):
        return start
    first = min((a for a, _ in fR.get(i, [])), default=None)
    if first is None:
        first = min((a for j, spans in fR.items() if j > i for a, _ in spans if a >= e_prev), default=len(R))
    for cue in (G, G.lstrip(), G.strip()):
        found = R.rfind(cue, e_prev, first) if cue else -1
        if found >= 0:  # then as much of the prompt's trailing whitespace as R shares
            end = found + len(cue)
            return max(start, end + lcp(G[G.index(cue) + len(cue):], R[end:first]))
    return start


_TOKEN_RE = re.compile(r"<[^<>\s]+>|\[[^\[\]\s]+\]")


def interruption(R: str, fR: dict[int, list[Span]], i: int, start: int,
                 headers: frozenset[str] = frozenset()) -> tuple[Span | None, int]:
    """Where the template writes later messages inside assistant turn ``i`` (Gemma 4 writes the
    tool results after the tool calls and before the turn's content), the part of the turn that
    is theirs, and ``k``: the turn is rendered as the last of it in ``render(C[:k])``.

    The turn is masked as rendered (slime PR #1742): up to the end of its fields before the first
    later field, through the first special token after them that neither the turn already wrote
    (``<|"|>``) nor closes what it opened (``<tool_call|>``): the stop that hands over
    (``<|tool_response>``); and again from its next own field. Returns ``(None, 0)`` for a turn
    that is not interrupted.
    """
    own = sorted(fR.get(i, []))
    if not own:
        return None, 0
    first, last_end = own[0][0], max(b for _, b in own)
    inside = {j: [a for a, _ in spans if first < a < last_end] for j, spans in fR.items() if j > i}
    inside = {j: a for j, a in inside.items() if a}
    if not inside:
        return None, 0
    x0 = min(min(a) for a in inside.values())
    fa = max((b for a, b in own if b <= x0), default=start)
    b0 = min(a for a, _ in own if a >= x0)
    turn, pos = R[start:fa], fa
    for m in _TOKEN_RE.finditer(R, fa, x0):
        if m.group(0) not in turn and not closers(m.group(0), turn, headers):
            pos = m.end()
            break
    return (pos, b0), max(inside) + 1


Render = Callable[..., str]


def opens_next_header(tail: str, rest: str, n: int, header_follows: bool = False) -> int:
    """Cut a shared terminator ``tail[:n]`` back to before a special token that opens the next
    header: the as-last-message rendering ``tail`` and the rest of ``R`` share a complete token
    (``<|start_header_id|>``, ``[`` ... ``]``) and then diverge on a role name on both sides
    (``assistant`` vs ``user``). Such a token is the next message's header, written after the last
    message regardless of ``add_generation_prompt`` (firefunction-v2), never the turn's stop.
    ``header_follows``: ``tail`` is known to end with such a header, so the shared complete token
    right before any divergence opens it (``<|START_OF_TURN_TOKEN|>`` before ``<|CHATBOT_TOKEN|>``
    vs ``<|USER_TOKEN|>``)."""
    diverge = tail[n].isalnum() and rest[n].isalnum() if 0 < n < min(len(tail), len(rest)) else False
    if not (0 < n < min(len(tail), len(rest)) and tail[n - 1] in ">]" and (diverge or header_follows)):
        return n
    opener = tail.rfind("<" if tail[n - 1] == ">" else "[", 0, n - 1)
    return opener if opener >= 0 and tail[n - 1] not in tail[opener : n - 1] else n


def shared_terminator(tail: str, rest: str) -> int:
    """Characters of ``tail`` (what the template writes after a turn's last field when the turn is
    last) that ``rest`` (what follows the field in ``R``) shares: the turn's terminator in ``R``."""
    return opens_next_header(tail, rest, cut_lcp(tail, rest))


_MARKER_RE = re.compile(r"\s*\S[^\n]*")
_CLOSER_RE = re.compile(r"\s*(?:</([^<>\s]+)>|<([^<>|\s]+)\|>)")


def closers(text: str, turn: str, headers: frozenset[str] = frozenset()) -> int:
    """Length of the leading run of ``text`` (written after a turn's last field) that only closes
    what the turn opened: tags such as ``</tool_call>`` after ``<tool_call>`` or ``<tool_call|>``
    after ``<|tool_call>``, with the whitespace between them (not after the last one). A tag that
    closes a message header's opener (``headers``, :func:`header_openers`: ``<turn|>`` of
    ``<|turn>``, which also opens ``<|turn>user``) ends the turn even where the turn wrote that
    opener itself (its own header, generated after a tool result): it is not a closer here."""
    pos = end = 0
    while True:
        m = _CLOSER_RE.match(text, pos)
        opener = f"<{m.group(1)}>" if m and m.group(1) else f"<|{m.group(2)}>" if m else ""
        if not m or opener not in turn or opener in headers:
            return end
        pos = end = m.end()


_HEADER_RE = re.compile(r"(<[^<>\s]+>)[ \t]*[A-Za-z_]\w*\s*(?:<[^<>\s]+>\s*)*$")


def header_openers(R: str, fR: dict[int, list[Span]], msgs: list[dict]) -> frozenset[str]:
    """The special tokens that open the header of a user message in ``R``: a tag followed by a
    role name right before the message's first field, other tags between them (``<|turn>`` of
    ``<|turn>user\n`` and of ``<|turn>user\n<|image|>``,
    ``<|im_start|>`` of ``<|im_start|>user\n``, ``<|start_header_id|>`` of
    ``<|start_header_id|>user<|end_header_id|>\n\n``)."""
    ends = sorted(b for spans in fR.values() for _, b in spans)
    found: set[str] = set()
    for j, m in enumerate(msgs):
        if m.get("role") != "user" or not fR.get(j):
            continue
        a = min(x for x, _ in fR[j])
        prev = max((b for b in ends if b <= a), default=0)
        head = _HEADER_RE.search(R, prev, a)
        if head:
            found.add(head.group(1))
    return frozenset(found)


def writes_stop(text: str, turn: str, headers: frozenset[str] = frozenset()) -> bool:
    """Whether ``text`` (written after a turn's last field) holds a stop: something other than
    whitespace and tags that close what the turn opened (:func:`closers`). GLM-4-MoE ends a tool
    call with ``</tool_call>`` and stops with the next message's ``<|observation|>``; ChatML's
    ``<|im_end|>`` is a stop."""
    return bool(text[closers(text, turn, headers):].strip())


def next_marker(R: str, fR: dict[int, list[Span]], i: int, fe: int) -> int:
    """Length of the opening marker of the message after assistant message ``i``, from ``fe``
    (where turn ``i``'s terminator-less text ends in ``R``): the text up to the first field of a
    later message, cut after its first special token when it opens with one (``<|user|>`` of
    ``<|user|>\\n``, ``<|observation|>`` of ``<|observation|><tool_response>``), else at the end of
    its first non-blank line, trailing whitespace excluded (``\\n\\nUser:`` of ``\\n\\nUser: ``).
    0 when no later message renders a field."""
    nxt = min((a for j, spans in fR.items() if j > i for a, _ in spans if a >= fe), default=None)
    if nxt is None:
        return 0
    m = _MARKER_RE.match(R, fe, nxt)
    if not m:
        return 0
    text = m.group(0)
    body = text.lstrip()
    closer = {"<": ">", "[": "]"}.get(body[:1])
    if closer and closer in body:
        return len(text) - len(body) + body.index(closer) + 1
    return len(text.rstrip())


def _after_last(render: Render, msgs: list[dict], i: int, tail: str) -> int:
    """The terminator of a final turn whose template writes the same text with and without the
    generation prompt: the part of ``tail`` shared with the rendering once a user message follows
    (a header written regardless of ``add_generation_prompt`` belongs to no turn)."""
    prev = next((m for m in reversed(msgs) if m.get("role") == "user"), None)
    body = wrap(len(msgs), "c")
    content = [{"type": "text", "text": body}] if prev is not None and isinstance(prev.get("content"), list) else body
    try:
        after = render(msgs + [{"role": "user", "content": content}], False)
    except Exception:  # noqa: BLE001 - the template refuses the probe: keep the whole tail
        return len(tail)
    fe = _field_end(field_spans(after), i)
    if fe is None:
        return len(tail)
    return opens_next_header(tail, after[fe:], cut_lcp(tail, after[fe:]), header_follows=True)


def turn_stop(render: Render, msgs: list[dict], i: int, R: str, fR: dict[int, list[Span]], span: Span,
              tail: str, agp_final: bool, headers: frozenset[str] = frozenset()) -> tuple[int, bool, int] | Problem:
    """Characters after assistant message ``i``'s last field (at ``fe`` in ``R``) that end the turn:
    the stop belongs to the turn (docs/oracle.md).

    * the terminator the template writes after the field (``tail``: as the last message), as far
      as ``R`` shares it; in history, when that differs, what it writes when another turn follows
      (``render(messages[:i+1], add_generation_prompt=True)``; gpt-oss ``<|end|>`` vs ``<|return|>``);
    * else (nothing but whitespace) the next message's opening marker (:func:`next_marker`), as
      TRL does by hand for GLM-4-MoE (PR #5988);
    * a final turn with no terminator keeps what the template writes after its last field
      (whitespace, closing tags) and has no stop (``--append-stop`` is TRL PR #6044).

    ``span`` is ``(start, fe)``: the turn's start and the end of its last field in ``R``.
    Whitespace and closing tags of what the turn opened are no stop (:func:`writes_stop`), unless
    they close a message header's opener (``headers``, :func:`header_openers`).

    Returns ``(length in characters from fe, whether the turn has a stop, length of the next
    message's marker at its end or 0)``, or a :class:`Problem`.
    """
    start, fe = span
    rest, turn = R[fe:], R[start:fe]
    if i == len(msgs) - 1 and not agp_final:
        n = _after_last(render, msgs, i, tail) if render(msgs, True) == R else len(tail)
        return n, writes_stop(tail[:n], turn, headers), 0
    n = shared_terminator(tail, rest)
    rerendered = n == 0 and bool(tail.strip())
    if rerendered:
        hist = render(msgs[: i + 1], True)
        fh = _field_end(field_spans(hist), i)
        n = shared_terminator(hist[fh:], rest) if fh is not None else 0
    if writes_stop(rest[:n], turn, headers):
        return n, True, 0
    marker = next_marker(R, fR, i, fe + n)
    if marker and rest[n : n + marker].strip():
        return n + marker, True, marker  # as rendered: no terminator here, the next message's marker
    if rerendered:
        return Problem(Reason.HISTORY_RERENDERED,
                       f"assistant message {i}: as the last message the turn ends with {readable(tail)[:24]!r}, but once "
                       f"later messages exist the template writes {readable(rest)[:24]!r} there", i)
    return Problem(Reason.STOP_TOKEN_IN_NEXT_MESSAGE,
                   f"assistant message {i}: the template writes no end-of-turn text after the turn's last field "
                   "and no later message opens with a marker", i)


def turn_start(render: Render, msgs: list[dict], i: int, R: str, fR: dict[int, list[Span]]) -> int | Problem:
    """Where assistant message ``i``'s turn starts in ``R``: the end of the last message before it
    that renders a field (its last field plus the terminator written after it when it is the last
    message, as far as ``R`` shares it), plus the part of the generation prompt
    ``G_i = P_i - render(C[:i])`` that ``R`` shares (:func:`_cue_end` when it is not right there)."""
    P = render(msgs[:i], True)
    B = render(msgs[:i], False)
    fB = field_spans(B)
    j = i - 1
    while j >= 0 and (_field_end(fR, j) is None or _field_end(fB, j) is None):
        j -= 1
    if j < 0:
        return Problem(Reason.UNTRACEABLE_TURN, f"no message before assistant message {i} renders a field", i)
    fe_prev, fe_prev_B = _field_end(fR, j), _field_end(fB, j)
    assert fe_prev is not None and fe_prev_B is not None  # the loop above stops only there
    e_prev = fe_prev + cut_lcp(B[fe_prev_B:], R[fe_prev:])
    G = generation_prompt(P, B)
    start = e_prev + cut_lcp(G, R[e_prev:])
    return _cue_end(R, fR, i, e_prev, start, G)


POLICIES = ("as-rendered", "last-turn")


def expected_masks(render: Render, case: Case, policy: str = "as-rendered") -> Oracle:
    """Compute the expected assistant mask of every assistant message of ``case``.

    Args:
        render: ``render(messages, add_generation_prompt) -> str`` for one template, with
            the case's tools and kwargs bound; it may raise (the caller handles errors).
        case: the conversation.
        policy: ``"as-rendered"`` (default): every assistant turn, as the template renders it in
            this conversation (slime PR #1742); ``"last-turn"``: only the last message, when it
            is an assistant turn (history turns are context, never trained).

    Returns:
        :class:`Oracle` with spans in characters of the full rendering ``R``.
    """
    msgs = case.messages
    last = len(msgs) - 1
    agp_final = case.full_agp
    R = render(msgs, agp_final)
    fR = field_spans(R)
    turns: dict[int, Span] = {}
    problems: list[Problem] = []
    unstopped: list[int] = []
    markers: dict[int, str] = {}
    holes: list[Span] = []
    headers = header_openers(R, fR, msgs)
    for i, m in enumerate(msgs):
        if m.get("role") != "assistant" or i == 0:
            continue
        T = R if (i == last and not agp_final) else render(msgs[: i + 1], False)
        start = turn_start(render, msgs, i, R, fR)
        if isinstance(start, Problem):
            problems.append(start)
            continue
        # End of message i: its last field, then the text the model must emit to end the turn.
        fe = _field_end(fR, i)
        fT = field_spans(T)
        fe_T = _field_end(fT, i)
        if fe is None or fe_T is None:
            # Nothing of the message renders: anchor at the turn start when T agrees with R there.
            if T[:start] != R[:start]:
                problems.append(Problem(Reason.UNTRACEABLE_TURN, f"assistant message {i} renders no field", i))
                continue
            fe, fe_T = start, start
        fe = max(fe, start)
        hole, k = interruption(R, fR, i, start, headers)
        if hole is not None:
            holes.append(hole)
            T = render(msgs[:k], False)  # the turn as rendered with the messages written inside it
            fe_T = _field_end(field_spans(T), i) or fe_T
        stop = turn_stop(render, msgs, i, R, fR, (start, fe), T[fe_T:], agp_final, headers)
        if isinstance(stop, Problem):
            problems.append(stop)
            continue
        end = fe + stop[0]
        if not stop[1]:
            unstopped.append(i)
        if stop[2]:
            markers[i] = R[end - stop[2]:end]
        turns[i] = (start, end)
    oracle = Oracle(R, turns, problems, fR, unstopped, markers, holes)
    return last_turn_only(oracle, last) if policy == "last-turn" else oracle


def last_turn_only(oracle: Oracle, last: int) -> Oracle:
    """``oracle`` restricted to message ``last`` (``--policy last-turn``): its turn, its problems."""
    keep = {i: s for i, s in oracle.turns.items() if i == last}
    span = keep.get(last, (0, 0))
    return Oracle(oracle.text, keep, [p for p in oracle.problems if p.turn == last], oracle.fields,
                  [i for i in oracle.unstopped if i == last], {i: m for i, m in oracle.markers.items() if i == last},
                  [h for h in oracle.holes if span[0] <= h[0] < span[1]])


def with_appended_stop(oracle: Oracle, case: Case, stop: str) -> Oracle:
    """The oracle of a rendering that appends ``stop`` after a final assistant turn without one
    (``--append-stop``, TRL PR #6044): ``stop`` inserted at the turn's end, the turn extended
    over it. Unchanged when the conversation does not end with such a turn."""
    last = len(case.messages) - 1
    if not stop or last not in oracle.unstopped or last not in oracle.turns:
        return oracle
    start, end = oracle.turns[last]
    text = oracle.text[:end] + stop + oracle.text[end:]
    turns = {**oracle.turns, last: (start, end + len(stop))}
    return Oracle(text, turns, oracle.problems, field_spans(text), [], {**oracle.markers, last: stop})


def appended(original: str, training: str, stop: str, at_least: int = 0) -> bool:
    """Whether ``training`` is ``original`` with ``stop`` inserted once, at or after ``at_least``."""
    if len(training) != len(original) + len(stop):
        return False
    p = lcp(original, training)
    return any(training == original[:q] + stop + original[q:] for q in range(p, max(at_least, p - len(stop)) - 1, -1))
