from ..conversations import readable
from ..verification import touching
from .base import Bad, Context, Good, Rule

_HEAD = "{% for m in messages %}{% if m.role == 'assistant' %}{{ '<|assistant|>\\n' }}"
_OTHER = "{% else %}{{ '<|' + m.role + '|>\\n' + m.content + '<|end|>\\n' }}{% endif %}{% endfor %}"


class TouchingGenerationBlocks(Rule):
    """Two generation blocks touch: one span ends exactly where the next one starts.

    What it does:
        Renders the probe conversations and reports a ``{% generation %}`` block whose span starts
        exactly where the previous span ends, after a character that is not ASCII (every field of
        the probes ends with a multi-byte character), at the line of the second block's tag.

    Why it matters:
        transformers ≤ 5.23 maps each span to tokens with ``char_to_token`` at its first and last
        character (5.24 masks every token overlapping a span, and loses nothing here; a training
        template must be right under both). A span that ends inside a character split into several byte tokens (an emoji,
        CJK extension B) masks only the first of them; the next span starts after that character,
        so the rest are never trained (Qwen3: 2 of the 3 tokens of a final ``🐱``). A span ending on a
        combining mark that the tokenizer's NFC merged into the previous character maps to no token
        and masks to the end of the sequence. The character-level union looks right; the tokens are
        not. An ASCII character is one byte, never split, so a touch after one is harmless.

    Example:
        ``{% generation %}{{ m.content }}{% endgeneration %}{% generation %}{{ '<|end|>' }}{% endgeneration %}``

    Use instead:
        One block for contiguous generated text:
        ``{% generation %}{{ m.content }}{{ '<|end|>' }}{% endgeneration %}``.

    Fix safety:
        No automatic fix in lint; merging the two blocks never changes the rendering.
    """

    code = "TMPL011"
    name = "touching-generation-blocks"
    examples = [
        Bad(_HEAD + "{% generation %}{{ m.content }}{% endgeneration %}\n{% generation %}{{ '<|end|>\\n' }}{% endgeneration %}" + _OTHER,
            line=2),
        Good(_HEAD + "{% generation %}{{ m.content }}{{ '<|end|>\\n' }}{% endgeneration %}" + _OTHER),
        # touching after an ASCII character: never inside a split character
        Good(_HEAD + "{% generation %}{{ m.content + '<|end|>' }}{% endgeneration %}{% generation %}{{ '\\n' }}{% endgeneration %}" + _OTHER),
    ]

    def check(self, ctx: Context):
        if not ctx.analysed.has_markers:
            return
        tags = ctx.generation_tags
        seen: set[int] = set()
        for case, r in ctx.masks.renders:
            starts = {a: k for (a, b), k in zip(r.spans, r.blocks) if b > a}
            ends = {b: k for (a, b), k in zip(r.spans, r.blocks) if b > a}
            for d in touching(r.text, r.spans):
                junction = d.span[0] + 1
                block, before = starts[junction], ends[junction]
                if block in seen or block >= len(tags) or before >= len(tags):
                    continue
                seen.add(block)
                line_a, col_a = ctx.position(tags[before])
                yield self.at(ctx, tags[block],
                              f"this generation block starts where the block at {line_a}:{col_a} ends, after "
                              f"{readable(r.text[:junction])[-8:]!r}: a span ending inside a "
                              f"multi-byte character loses the rest of its tokens under transformers <= 5.23 "
                              f"(char_to_token mapping); make contiguous generated text one block "
                              f"(probe with {len(case.messages)} messages)")
