"""Reason codes: why a template cannot be augmented or proved (the one owner of the codes).

The codes appear in the CLI, in ``--json`` records, in ``tmplc corpus`` reports and in
docs/coverage.md. :class:`Reason` is a ``str`` enum, so ``Reason.PROOF_FAILED == "proof-failed"``.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .conversations import Case


class Reason(str, Enum):
    """A closed set of reasons; ``description`` is the one-line explanation shown in docs."""

    STOP_TOKEN_IN_NEXT_MESSAGE = "stop-token-in-next-message"
    NEVER_RENDERS_ASSISTANT = "never-renders-assistant"
    RAISES_ON_EVERY_PROBE = "raises-on-every-probe"
    HISTORY_RERENDERED = "history-rerendered"
    NOT_PREFIX_PRESERVABLE = "not-prefix-preservable"
    UNTRACEABLE_TURN = "untraceable-turn"
    UNSPLITTABLE_OUTPUT = "unsplittable-output"
    NO_CONDITION = "no-condition"
    MARKER_SCOPE = "marker-scope"
    PROOF_FAILED = "proof-failed"
    TRACE_MISMATCH = "trace-mismatch"
    RENDER_TIMEOUT = "render-timeout"
    RENDER_TOO_LARGE = "render-too-large"
    TOO_DEEPLY_NESTED = "too-deeply-nested"
    INTERNAL_ERROR = "internal-error"

    def __str__(self) -> str:
        return self.value

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Reason.STOP_TOKEN_IN_NEXT_MESSAGE: "the turn has no end-of-turn text; its stop token is written by the next message",
    Reason.NEVER_RENDERS_ASSISTANT: "no probe conversation renders an assistant message",
    Reason.RAISES_ON_EVERY_PROBE: "the template raises on every probe conversation",
    Reason.HISTORY_RERENDERED: "the template renders a turn differently once later messages exist, so no marker placement matches what the model generates",
    Reason.NOT_PREFIX_PRESERVABLE: ("--prefix-preserving: a history assistant turn renders differently from the turn "
                                    "as generated, and no condition of the template can be fixed to render it so"),
    Reason.UNTRACEABLE_TURN: "a turn's fields cannot be found in the rendering",
    Reason.UNSPLITTABLE_OUTPUT: "one output value holds both prompt and generated text and cannot be split",
    Reason.NO_CONDITION: "a node is generated text in some turns and prompt in others, and no traced condition separates them",
    Reason.MARKER_SCOPE: "the generated text is written from inside a macro or a {% set %} block, where markers are not seen",
    Reason.PROOF_FAILED: "the proof found a conversation the training template masks wrongly",
    Reason.TRACE_MISMATCH: "the instrumented template does not render like the original",
    Reason.RENDER_TIMEOUT: "rendering the template exceeded the time budget (--timeout) on the conversation shown",
    Reason.RENDER_TOO_LARGE: "a rendering, or a string or list the template builds, exceeds the size limit (4,000,000 characters)",
    Reason.TOO_DEEPLY_NESTED: "the template, or its training variant (which adds a level), nests deeper than jinja2 and Python can parse or compile",
    Reason.INTERNAL_ERROR: "tmplc failed internally on this template (a bug: please report it with the template)",
}

# Code → description, for docs and the corpus table (kept for callers that iterate the codes).
REASONS: dict[str, str] = {r.value: r.description for r in Reason}


class CannotAugment(Exception):
    """Raised inside locate/split/plan/rewrite when no marker placement fits the oracle.

    Args:
        reason: a :class:`Reason`.
        message: one line naming the template node or turn concerned.
        case: the (minimal) probe conversation that shows it, when there is one.
    """

    def __init__(self, reason: Reason, message: str, case: Case | None = None):
        super().__init__(message)
        self.reason = Reason(reason)
        self.message = message
        self.case = case
