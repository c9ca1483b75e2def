from ..render import compile_template
from ..syntax import Block
from ..verification import Renderings, same_rendering
from .base import Bad, Context, Good, Rule


class WhitespaceHazard(Rule):
    """A generation tag eats a newline or indentation that the template writes.

    What it does:
        Reports ``{% generation %}`` / ``{% endgeneration %}`` tags directly followed by a newline
        without ``+%}`` (``trim_blocks`` removes it) or preceded by indentation without ``{%+``
        (``lstrip_blocks`` removes it) while the neighbouring tag would have kept it.

    Why it matters:
        Under transformers' ``trim_blocks``/``lstrip_blocks`` the marker's position changes the
        rendered text: ``…<|end|>{% endgeneration %}\\n`` loses the ``\\n`` the original had, so
        training text differs from inference text.

    Fix safety:
        No automatic fix in lint; ``tmplc augment`` chooses whitespace control for every tag.
    """

    code = "TMPL010"
    name = "whitespace-hazard"
    severity = "warning"
    examples = [
        Bad("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}\n{{ '|' }}{% endfor %}", line=1),
        Good("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration +%}\n{{ '|' }}{% endfor %}"),
        Good("{%- for m in messages %}\n    {%- generation %}{{- m.content }}{%- endgeneration %}\n{%- endfor %}"),
    ]

    def check(self, ctx: Context):
        if not ctx.analysed.has_markers or ctx.template is None:
            return
        src = ctx.source
        tags = [t for node, _ in ctx.template.walk() if isinstance(node, Block) and node.name == "generation"
                for t in (node.clauses[0].tag, node.end_tag)]
        candidates = []
        for tag in tags:
            before = src[src.rfind("\n", 0, tag.start) + 1 : tag.start]
            if tag.right_mod == "" and src[tag.end : tag.end + 1] in ("\n", "\r"):
                candidates.append((tag, "is followed by a newline that trim_blocks removes; use '+%}'"))
            elif tag.left_mod == "" and before and not before.strip(" \t"):
                candidates.append((tag, "is preceded by indentation that lstrip_blocks removes; use '{%+'"))
        if candidates and self._changes_rendering(ctx, tags):
            for tag, why in candidates:
                yield self.at(ctx, tag.start, f"'{src[tag.start:tag.end]}' {why}")

    @staticmethod
    def _changes_rendering(ctx: Context, tags) -> bool:
        """Render the first probes with and without the generation tags."""
        src = ctx.source
        stripped, last = [], 0
        for tag in sorted(tags, key=lambda t: t.start):
            stripped.append(src[last : tag.start])
            last = tag.end
        stripped.append(src[last:])
        try:
            a, b = ctx.analysed.compiled, compile_template("".join(stripped))
        except Exception:  # noqa: BLE001 - TMPL000 reports a template that does not compile
            return False
        return any(same_rendering(Renderings(a, case), Renderings(b, case), prefixes=False) for case in ctx.probes[:6])
