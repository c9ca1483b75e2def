from .base import Bad, Context, Good, Rule


class NotPrefixPreserving(Rule):
    """The rendering of the conversation so far is not a prefix of the full rendering.

    What it does:
        For probe conversations, checks that ``render(messages[:i], add_generation_prompt=True)``
        is a prefix of ``render(messages)`` before each assistant message, and names the first
        turn where it is not. A warning, and not in the default selection (it renders every
        template; ``--select TMPL009``): some templates do this on purpose (Qwen3 drops old
        reasoning).

    Why it matters:
        Incremental masking (render the prefix, diff) and RL rollouts that extend a prompt both
        assume it; where it fails, masks must come from one full rendering.

    Example:
        A template that appends ``eos_token`` after the generation prompt.

    Use instead:
        Nothing to change if intended; use the full-render oracle (tmplc does).

    Fix safety:
        No automatic fix.
    """

    code = "TMPL009"
    name = "not-prefix-preserving"
    severity = "warning"
    default = False  # renders every probe of every template: opt in with --select TMPL009
    examples = [
        Bad("{% for m in messages %}{{ m.role + ':' + m.content + '\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}{{ '<end>' }}", line=1),
        Good("{% for m in messages %}{{ m.role + ':' + m.content + '\\n' }}{% endfor %}"
             "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"),
    ]

    def check(self, ctx: Context):
        for index, case in ctx.masks.prefix_breaks[:1]:
            yield self.at(ctx, 0, f"not prefix-preserving at message {index}: the rendering with "
                          f"the generation prompt before it is not a prefix of the {len(case.messages)}-message conversation")
