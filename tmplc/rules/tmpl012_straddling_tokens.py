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
        Training masks whole tokens. transformers masks a token that straddles a span edge (it maps
        the span's first and last character with ``char_to_token``), so part of the prompt — the
        ``\\n`` of Qwen's ``<|im_start|>assistant\\n`` cue merged with content starting ``\\n\\n`` into
        one ``\\n\\n\\n`` token — is trained as output. That is inherent to the template's text and the
        tokenizer, not to the markers, so it is a warning: know it, count it, decide.

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
        from ..tokens import STRADDLING, classify_tokens, plain
        from .tmpl011_touching_generation_blocks import _line_offset

        tok: Any = ctx.tokenizer
        seen: set[tuple[int, str]] = set()
        for case in (plain(c, FILL) for c in ctx.analysed.probes_and_prefixes):
            r = Renderings(ctx.analysed.compiled, case).full()
            if isinstance(r, Raised):  # the template refuses this conversation
                continue
            enc = tok(r.text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = [tuple(o) for o in enc["offset_mapping"]]
            states = classify_tokens(offsets, r.spans)
            for t, state in enumerate(states):
                if state != STRADDLING:
                    continue
                a, b = offsets[t]
                for (start, end), line in zip(r.spans, r.lines):
                    for edge, which in ((start, "start"), (end, "end")):
                        if a < edge < b and (line, which) not in seen:
                            seen.add((line, which))
                            piece = tok.convert_ids_to_tokens(int(enc["input_ids"][t]))
                            yield self.at(ctx, _line_offset(ctx.source, line),
                                          f"token {piece!r} ({r.text[a:b]!r}) straddles the {which} of this generation "
                                          f"span ({edge - a} of its {b - a} characters before the edge); it is masked "
                                          f"whole (probe with {len(case.messages)} messages)")
