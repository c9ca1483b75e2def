from ..syntax import Block
from .base import Bad, Context, Diagnostic, Good, Rule


class UnbalancedMarkers(Rule):
    """``{% generation %}`` without ``{% endgeneration %}``, a stray end tag, or nested markers.

    What it does:
        Reports an unclosed or stray generation tag at its position, and a generation block
        inside another one.

    Why it matters:
        An unclosed tag fails to compile; a nested block records the inner span twice and the
        outer span once, which is redundant at best and hides a misplaced tag.

    Fix safety:
        No automatic fix.
    """

    code = "TMPL002"
    name = "unbalanced-markers"
    needs_template = False
    examples = [
        Bad("{% for m in messages %}{% generation %}{{ m.content }}{% endfor %}", line=1),
        Bad("{{ x }}\n{% endgeneration %}", line=2),
        Bad("{% generation %}a{% generation %}b{% endgeneration %}{% endgeneration %}", line=1),
        Good("{% generation %}a{% endgeneration %}{% generation %}b{% endgeneration %}"),
    ]

    def check(self, ctx: Context):
        err = ctx.syntax_error
        if err is not None:
            if err.kind == "markers":
                yield Diagnostic(self.code, self.name, err.message, ctx.path, err.line, err.col)
            return
        if not ctx.analysed.has_markers or ctx.template is None:
            return
        for node, stack in ctx.template.walk():
            if isinstance(node, Block) and node.name == "generation" and any(b.name == "generation" for b in stack):
                yield self.at(ctx, node.start, "generation block nested inside another generation block")
