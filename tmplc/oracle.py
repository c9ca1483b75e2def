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

from dataclasses import dataclass
from typing import Callable

from .conversations import Case, Span, field_spans
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

    def mask(self) -> set[int]:
        return {c for a, b in self.turns.values() for c in range(a, b)}


def lcp(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (characters)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


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


Render = Callable[..., str]


def expected_masks(render: Render, case: Case) -> Oracle:
    """Compute the expected assistant mask of every assistant message of ``case``.

    Args:
        render: ``render(messages, add_generation_prompt) -> str`` for one template, with
            the case's tools and kwargs bound; it may raise (the caller handles errors).
        case: the conversation.

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
    for i, m in enumerate(msgs):
        if m.get("role") != "assistant" or i == 0:
            continue
        P = render(msgs[:i], True)
        B = render(msgs[:i], False)
        T = R if (i == last and not agp_final) else render(msgs[: i + 1], False)
        # End of message i-1 in R: its last field plus the terminator written after it.
        # End of the last message before i that renders a field (a template may drop a role).
        fB = field_spans(B)
        j = i - 1
        while j >= 0 and (_field_end(fR, j) is None or _field_end(fB, j) is None):
            j -= 1
        if j < 0:
            problems.append(Problem(Reason.UNTRACEABLE_TURN, f"no message before assistant message {i} renders a field", i))
            continue
        fe_prev, fe_prev_B = _field_end(fR, j), _field_end(fB, j)
        e_prev = fe_prev + cut_lcp(B[fe_prev_B:], R[fe_prev:])
        shared = cut_lcp(B, P)
        G = P[shared:]
        start = e_prev + cut_lcp(G, R[e_prev:])
        first = min((a for a, _ in fR.get(i, [])), default=None)
        if G and first is not None and start - e_prev < len(G):
            # The generation prompt is not right after the previous message's terminator (Hermes
            # writes a tool result's end differently once an assistant follows): the turn starts
            # where the generation-prompt text ends in the conversation's own rendering.
            found = R.rfind(G, e_prev, first)
            if found >= 0:
                start = found + len(G)
        # End of message i.
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
        term = cut_lcp(T[fe_T:], R[fe:])
        tail, rest = T[fe_T:], R[fe:]
        if 0 < term < min(len(tail), len(rest)) and tail[term - 1] == ">" and tail[term].isalnum() \
                and rest[term].isalnum() and render(msgs[: i + 1], True) == T:
            # The template writes the next generation prompt even without add_generation_prompt
            # (firefunction-v2 ends every rendering with `<|start_header_id|>assistant…`): the
            # special token shared before the role names diverge opens the next header, it does
            # not end this turn.
            opener = tail.rfind("<", 0, term - 1)
            if opener >= 0 and ">" not in tail[opener : term - 1]:
                term = opener
        end = fe + term
        if term == 0:
            if T[fe_T:] and i != last:
                problems.append(
                    Problem(
                        Reason.HISTORY_RERENDERED,
                        f"assistant message {i}: as the last message the turn ends with {T[fe_T:][:24]!r}, "
                        f"but once later messages exist the template writes {R[fe:][:24]!r} there",
                        i,
                    )
                )
            else:
                problems.append(
                    Problem(
                        Reason.STOP_TOKEN_IN_NEXT_MESSAGE,
                        f"assistant message {i}: the template writes no end-of-turn text after the turn's last field"
                        + (" (the next message's text follows directly)" if i != last else ""),
                        i,
                    )
                )
        turns[i] = (start, end)
    return Oracle(R, turns, problems, fR)
