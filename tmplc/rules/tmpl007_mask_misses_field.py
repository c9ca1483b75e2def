from ._mask_rule import MaskRule
from .base import Bad, Good
from .tmpl004_mask_covers_prompt import GOOD, HEAD, TAIL


class MaskMissesField(MaskRule):
    """Generated text inside a turn (reasoning, tool calls, content) is left out of the mask.

    What it does:
        Reports expected characters inside a turn, before its end, that no generation block covers.

    Why it matters:
        The model is not trained on its reasoning or tool calls, so it does not learn to emit them.

    Use instead:
        Start the generation block before the reasoning.

    Fix safety:
        No automatic fix in lint; ``tmplc augment`` places the markers and proves them.
    """

    code = "TMPL007"
    name = "mask-misses-field"
    kind = "field"
    what = "leaves generated text unmasked:"
    examples = [
        Bad(HEAD + "{{ '<|assistant|>\\n' -}}\n{{ '<think>' + (m.reasoning_content or '') + '</think>' }}"
            "{% generation %}{{ m.content + '<|end|>\\n' }}{% endgeneration %}" + TAIL, line=2),
        Good(GOOD),
    ]
