from .base import Bad, Context, Good, Rule

GOOD = (
    "{% for m in messages %}{{ '<|' + m.role + '|>' }}"
    "{% if m.role == 'assistant' %}{% generation %}{{ m.content + '<|end|>' }}{% endgeneration %}"
    "{% else %}{{ m.content + '<|end|>' }}{% endif %}{% endfor %}"
)


class MissingMarkers(Rule):
    """A training template has no ``{% generation %}`` markers.

    What it does:
        Flags a template meant for training (named ``*_training.jinja``, carrying tmplc's header,
        or linted with ``--training``) that contains no ``{% generation %}`` block.

    Why it matters:
        ``return_assistant_tokens_mask=True`` then gives an all-zero mask; transformers only logs
        a warning and TRL's assistant-only loss trains on nothing (or raises).

    Use instead:
        Regenerate it: ``tmplc augment chat.jinja``.

    Fix safety:
        No automatic fix in lint; ``tmplc augment`` writes a proved replacement.
    """

    code = "TMPL001"
    name = "missing-markers"
    examples = [
        Bad("{% for m in messages %}{{ m.content }}{% endfor %}", line=1, training=True),
        Good(GOOD, training=True),
        Good("{% for m in messages %}{{ m.content }}{% endfor %}"),
    ]

    def check(self, ctx: Context):
        if ctx.training and not ctx.analysed.has_markers:
            yield self.at(ctx, 0, "training template without {% generation %} markers: assistant masks will be all zero")
