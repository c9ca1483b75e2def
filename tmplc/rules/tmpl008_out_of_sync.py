from .base import Bad, Context, Good, Rule

ORIGINAL = "{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}"
IN_SYNC = ("{% for m in messages %}{{ m.role + ': ' }}{% if m.role == 'assistant' %}{% generation %}"
           "{{ m.content + '\\n' }}{% endgeneration %}{% else %}{{ m.content + '\\n' }}{% endif %}{% endfor %}")


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
        from ..conversations import detect_features, probe_cases, with_prefixes
        from ..render import compile_template

        try:
            orig = compile_template(ctx.original)
        except Exception:  # noqa: BLE001
            return
        train = compile_template(ctx.source)
        for case in with_prefixes(probe_cases(detect_features(ctx.original))):
            for agp in (False, True):
                outs = []
                for tpl in (orig, train):
                    try:
                        outs.append(case.render(tpl, agp=agp)[0])
                    except Exception as exc:  # noqa: BLE001 - both refusing the probe is in sync
                        outs.append(f"<raises {type(exc).__name__}>")
                if outs[0] != outs[1]:
                    n = next((i for i, (a, b) in enumerate(zip(*outs)) if a != b), min(map(len, outs)))
                    yield self.at(ctx, 0, f"renders differently from {ctx.original_label or 'its source'} "
                                  f"({len(case.messages)}-message probe, add_generation_prompt={agp}, "
                                  f"first difference at character {n})")
                    return
