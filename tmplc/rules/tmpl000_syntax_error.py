from ..errors import one_line
from .base import Bad, Context, Diagnostic, Good, Rule


class SyntaxError_(Rule):
    """The template does not parse.

    What it does:
        Reports malformed Jinja (unterminated tag or string, unclosed or stray block tag, or an
        error from jinja2's compiler, such as an unknown filter or blocks nested deeper than
        Python can compile) at its line and column.

    Why it matters:
        transformers raises on the first ``apply_chat_template`` call; a template that only breaks
        on some paths fails mid-training.

    Fix safety:
        No automatic fix.
    """

    code = "TMPL000"
    name = "syntax-error"
    needs_template = False
    examples = [
        Bad("{% for m in messages %}{{ m.content }}", line=1),
        Bad("hi\n{{ m.content ", line=2),
        Bad("{{ m.content | no_such_filter }}", line=1),
        Bad("{% if true %}" * 120 + "x" + "{% endif %}" * 120, line=1),
        Good("{% for m in messages %}{{ m.content }}{% endfor %}"),
    ]

    def check(self, ctx: Context):
        err = ctx.syntax_error
        if err is not None and err.kind != "markers":
            yield Diagnostic(self.code, self.name, one_line(err.message), ctx.path, err.line, err.col)
