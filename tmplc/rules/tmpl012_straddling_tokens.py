from typing import Any

from ..verification import Raised, Renderings
from .base import Bad, Context, Good, Rule

# Content that starts with newlines: after a cue ending in "\n" (ChatML, Qwen) byte-level BPE
# merges them into one "\n\n\n" token, half prompt and half output.
FILL = "\n\nok \U0001f431"

_CHATML = ("{% for m in messages %}{% if m.role == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
           "{% generation %}{{ m.content + '<|im_end|>\\n' }}{% endgeneration %}"
           "{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}")


class StraddlingTokens(Rule):
    """A token of the rendering has characters both inside and outside a generation span.

    What it does:
        With ``tmplc lint --tokenizer PATH``, renders the probe conversations without sentinels and
        with fields starting with newlines and ending with a multi-byte character, tokenizes each
        rendering with offsets, and reports the generation block whose span edge falls inside a
        token, with that token. Without ``--tokenizer`` the rule does nothing.

    Why it matters:
        Training masks whole tokens. transformers trains a token that straddles a span edge — under
        the ``overlap`` mapping (transformers ≥ 5.24) every token touching a span, under
        ``char_to_token`` (≤ 5.23) the token of the span's first and of its last character — so
        part of the prompt — the ``\\n`` of Qwen's ``<|im_start|>assistant\\n`` cue merged with
        content starting ``\\n\\n`` into one ``\\n\\n\\n`` token — is trained as output. That is
        inherent to the template's text and the tokenizer, not to the markers, so it is a warning:
        know it, count it, decide. The message says whether the installed transformers trains the
        token and under which mapping (:func:`tmplc.tokens.trained_mask`).

    Example:
        ``{{ '<|im_start|>assistant\\n' }}{% generation %}{{ m.content + '<|im_end|>\\n' }}{% endgeneration %}``
        with content ``'\\n\\nok'`` and the Qwen3 tokenizer.

    Use instead:
        Nothing to change in the markers; strip leading newlines from the training data, or accept
        the token (the model learns to emit ``\\n\\n\\n`` after the cue).

    Fix safety:
        No fix: moving the marker cannot split a token.
    """

    code = "TMPL012"
    name = "straddling-tokens"
    severity = "warning"
    examples = [
        Bad(_CHATML, line=1, tokenizer="qwen3"),
        Good(_CHATML.replace("+ '<|im_end|>\\n'", "| trim + '<|im_end|>\\n'"), tokenizer="qwen3"),
        Good(_CHATML),  # no tokenizer: the rule does nothing
    ]

    def check(self, ctx: Context):
        if ctx.tokenizer is None or not ctx.analysed.has_markers:
            return
        from ..conversations import Case
        from ..tokens import describe_mapping, plain, sanitized_inputs, trained_mask

        tok: Any = ctx.tokenizer
        sanitize = ctx.sanitize_control_tokens
        mapping = describe_mapping()
        seen: set[tuple[int, str]] = set()
        for case in (plain(c, FILL) for c in ctx.analysed.probes_and_prefixes):
            if sanitize:
                messages, tools, _, kwargs = sanitized_inputs(tok, ctx.analysed.source, case.messages, case.tools, None,
                                                              case.kwargs)
                case = Case(messages, tools, kwargs, case.add_generation_prompt)
            r = Renderings(ctx.analysed.compiled, case).full()
            if isinstance(r, Raised):  # the template refuses this conversation
                continue
            tm = trained_mask(tok, r.text, r.spans, sanitized=sanitize)
            for s in tm.straddles:
                a, b = s.chars
                for edge, which in s.edges:
                    for (start, end), block in zip(tm.spans, r.blocks):
                        if edge == (start if which == "start" else end) and (block, which) not in seen \
                                and block < len(ctx.generation_tags):
                            seen.add((block, which))
                            yield self.at(ctx, ctx.generation_tags[block],
                                          f"token {s.piece!r} ({s.text!r}) straddles the {which} of this generation "
                                          f"span ({edge - a} of its {b - a} characters before the edge); it is "
                                          f"{'trained whole' if s.trained else 'not trained'} ({mapping}; probe with "
                                          f"{len(case.messages)} messages)")
