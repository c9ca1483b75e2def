from ._mask_rule import MaskRule
from .base import Bad, Good
from .tmpl004_mask_covers_prompt import GOOD


class MaskCoversOtherRole(MaskRule):
    """The mask covers text that belongs to another role (system, user, tool) or to no turn.

    What it does:
        Reports masked characters outside every assistant turn that are not the turn's prompt cue.

    Why it matters:
        The model is trained to produce user or tool text: it learns to simulate the user.

    Use instead:
        Mark only the assistant branch.

    Fix safety:
        No automatic fix in lint; ``tmplc augment`` adds an assistant-only branch and proves it.
    """

    code = "TMPL006"
    name = "mask-covers-other-role"
    kind = "other-role"
    what = "masks text the model does not generate:"
    examples = [
        Bad("{% for m in messages %}{{ '<|' + m.role + '|>\\n' }}\n{% generation %}{{ m.content + '<|end|>\\n' }}"
            "{% endgeneration %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}", line=2),
        Good(GOOD),
    ]
