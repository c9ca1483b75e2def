from ..syntax import Block
from .base import Bad, Context, Good, Rule

SCOPES = {"macro", "set", "call", "filter"}


class MarkerScope(Rule):
    """A ``{% generation %}`` block inside a macro, a ``{% set %}`` block, a call or filter block.

    What it does:
        Reports generation markers placed where transformers' tracker cannot see the output.

    Why it matters:
        The tracker records offsets from the text already yielded by the top-level template;
        inside a macro or a captured ``{% set %}`` block the recorded span points at the wrong
        characters (usually the start of the output), so the mask covers the wrong tokens.

    Use instead:
        Wrap the call site: ``{% generation %}{{ turn(m) }}{% endgeneration %}``.

    Fix safety:
        No automatic fix.
    """

    code = "TMPL003"
    name = "marker-scope"
    examples = [
        Bad("{% macro t(m) %}{% generation %}{{ m }}{% endgeneration %}{% endmacro %}{{ t('x') }}", line=1),
        Bad("{% set out %}\n{% generation %}x{% endgeneration %}{% endset %}{{ out }}", line=2),
        Good("{% macro t(m) %}{{ m }}{% endmacro %}{% generation %}{{ t('x') }}{% endgeneration %}"),
    ]

    def check(self, ctx: Context):
        if not ctx.analysed.has_markers or ctx.template is None:
            return
        for node, stack in ctx.template.walk():
            if isinstance(node, Block) and node.name == "generation":
                scope = next((b for b in reversed(stack) if b.name in SCOPES), None)
                if scope is not None:
                    yield self.at(ctx, node.start, f"generation marker inside a {{% {scope.name} %}} block: "
                                  "the tracker records a wrong span there")
