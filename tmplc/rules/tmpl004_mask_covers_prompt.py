from ._mask_rule import MaskRule
from .base import Bad, Good

HEAD = "{% for m in messages %}{% if m.role == 'assistant' %}"
TAIL = ("{% else %}{{ '<|' + m.role + '|>\\n' + m.content + '<|end|>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")
GOOD = HEAD + "{{ '<|assistant|>\\n' }}{% generation %}{{ m.content + '<|end|>\\n' }}{% endgeneration %}" + TAIL




class MaskCoversPromptCue(MaskRule):
    """The mask covers text of the generation prompt (the role cue).

    What it does:
        Renders the probe set, computes what the model generates after the generation prompt
        (the oracle) and reports masked characters just before a turn's start, at the template
        node that wrote them.

    Why it matters:
        The model is trained to emit its own role cue (``<|im_start|>assistant\\n``), which it
        never samples at inference: scaffolding tokens inflate the loss signal and shift masks.

    Fix safety:
        No automatic fix in lint; ``tmplc augment`` splits the expression and proves the result.
    """

    code = "TMPL004"
    name = "mask-covers-prompt"
    kind = "cue"
    what = "masks prompt text"
    examples = [
        Bad(HEAD + "\n{% generation %}{{ '<|assistant|>\\n' + m.content + '<|end|>\\n' }}{% endgeneration %}" + TAIL,
            line=2),
        Good(GOOD),
    ]
