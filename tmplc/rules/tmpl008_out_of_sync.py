from ..errors import InputError
from ..verification import Renderings, same_rendering
from .base import Bad, Context, Good, Rule

ORIGINAL = "{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}"
IN_SYNC = ("{% for m in messages %}{{ m.role + ': ' }}{% if m.role == 'assistant' %}{% generation %}"
           "{{ '' + m.content + '\\n' }}{% endgeneration %}{% else %}{{ '' + m.content + '\\n' }}{% endif %}{% endfor %}")


class OutOfSync(Rule):
    """A training template renders differently from the template it was made from.

    What it does:
        Renders the probe set with the training template and with its source (named in tmplc's
        header, or given with ``--source``) and reports the first conversation that differs.

    Why it matters:
        Training on one rendering and serving another shifts every token after the difference;
        hand edits upstream silently desynchronise the two files.

    Example:
        A ``*_training.jinja`` whose source later changed its system prompt.

    Use instead:
        Regenerate: ``tmplc augment SOURCE``.

    Fix safety:
        No automatic fix in lint; ``tmplc augment`` regenerates and proves.
    """

    code = "TMPL008"
    name = "out-of-sync"
    examples = [
        Bad(IN_SYNC.replace("': '", "':  '"), line=1, training=True, original=ORIGINAL),
        Good(IN_SYNC, training=True, original=ORIGINAL),
    ]

    def check(self, ctx: Context):
        if ctx.original is None:
            return
        try:
            orig, train = ctx.original.compiled, ctx.analysed.compiled
            cases = ctx.original.probes_and_prefixes
        except InputError:  # a broken source: nothing to compare with
            return
        for case in cases:
            diff = same_rendering(Renderings(orig, case), Renderings(train, case))
            if diff is not None:
                yield self.at(ctx, 0, f"renders differently from {ctx.original.label} "
                              f"({diff.messages}-message prefix of a probe, add_generation_prompt={diff.agp}, "
                              f"first difference at character {diff.first_difference})")
                return
