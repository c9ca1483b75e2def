from ._mask_rule import MaskRule
from .base import Bad, Good
from .tmpl004_mask_covers_prompt import GOOD, HEAD, TAIL


class MaskMissesStopToken(MaskRule):
    """The end-of-turn / stop token after a turn is not masked.

    What it does:
        Reports expected characters at the end of a turn that no generation block covers: the
        stop as docs/oracle.md defines it (one definition, through ``tmplc.verification``): the
        template's terminator (``<|im_end|>``, ``<|eot_id|>``, a ``<|tool_response>`` after a
        tool call, a trailing eos), or, for a template that writes none, the opening marker of
        the message that follows (GLM's ``<|user|>``/``<|observation|>``, ``\\n\\nUser:``).

    Why it matters:
        The model never learns to stop: training runs fine, generations run on at inference.

    Fix safety:
        No automatic fix in lint; ``tmplc augment`` places the markers and proves them.
    """

    code = "TMPL005"
    name = "mask-misses-stop-token"
    kind = "stop-token"
    what = "leaves the end of the turn unmasked:"
    examples = [
        Bad(HEAD + "{{ '<|assistant|>\\n' }}{% generation %}{{ m.content }}{% endgeneration %}\n{{ '<|end|>\\n' }}" + TAIL,
            line=2),
        Good(GOOD),
    ]
