import re

from ..render import GENERATION_RE
from .base import Bad, Context, Good, Rule

TRAINING = (
    "{% for m in messages %}{{ '<|' + m.role + '|>' }}"
    "{% if m.role == 'assistant' %}{% generation %}{{ m.content + '<|end|>' }}{% endgeneration %}"
    "{% else %}{{ m.content + '<|end|>' }}{% endif %}{% endfor %}"
)
ORIGINAL = "{% for m in messages %}{{ '<|' + m.role + '|>' + m.content + '<|end|>' }}{% endfor %}"

# Where inference engines read a model's template by default: chat_template.jinja, the string
# chat_template of tokenizer_config.json, or its list entry named "default" (lint's labels).
DEFAULT_PLACE_RE = re.compile(r"(?:\A|[/\\])(?:chat_template\.jinja|tokenizer_config\.json(?:#chat_template\[default\])?)\Z")


def is_default_place(path: str) -> bool:
    """True when ``path`` (a lint label) is where inference servers load the default template."""
    return bool(DEFAULT_PLACE_RE.search(path))


class MarkersInDefaultTemplate(Rule):
    """A template with ``{% generation %}`` markers is a model's default chat template.

    What it does:
        Flags ``{% generation %}`` in ``chat_template.jinja``, in the ``chat_template`` string of
        ``tokenizer_config.json``, or in its list entry named ``default``: the places inference
        engines load by default.

    Why it matters:
        ``generation`` is a transformers extension, not Jinja. Engines built on minijinja (TGI,
        mistral.rs) refuse the whole template, so a model whose default template carries
        training markers cannot be served there. Measured with minijinja 3.0.5 on
        ``qwen3_vl_training.jinja``: ``syntax error: unknown statement generation (in
        training:62)``, while the original loads and renders like transformers.

    Example:
        A training template copied over ``chat_template.jinja``.

    Use instead:
        Keep the original as the default and ship the training template as a named one,
        ``additional_chat_templates/training.jinja``, loaded with
        ``apply_chat_template(..., chat_template="training")``: ``tmplc export hub MODEL_DIR``.

    Fix safety:
        No automatic fix in lint: restore the original ``chat_template.jinja``, then run
        ``tmplc export hub``, which refuses to overwrite a default template.
    """

    code = "TMPL013"
    name = "markers-in-default-template"
    needs_template = False
    examples = [
        Bad(TRAINING, line=1, path="model/chat_template.jinja"),
        Bad("{{ bos_token }}\n" + TRAINING, line=2, path="model/tokenizer_config.json"),
        Bad(TRAINING, line=1, path="model/tokenizer_config.json#chat_template[default]"),
        Good(ORIGINAL, path="model/chat_template.jinja"),
        Good(TRAINING, path="model/additional_chat_templates/training.jinja"),
        Good(TRAINING, path="model/tokenizer_config.json#chat_template[training]"),
    ]

    def check(self, ctx: Context):
        if not is_default_place(ctx.path):
            return
        m = GENERATION_RE.search(ctx.source)
        if m:
            yield self.at(ctx, m.start(), "{% generation %} markers in a default chat template: minijinja-based "
                          "servers (TGI, mistral.rs) fail with 'unknown statement generation'; ship it as "
                          "additional_chat_templates/training.jinja (tmplc export hub)")
