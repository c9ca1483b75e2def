"""The rule catalogue: one rule per module, registered here by code.

``select(select, ignore)`` picks rules by code or prefix (``TMPL00``, ``TMPL004``), as ruff does.
"""

from __future__ import annotations

from .base import Context, Diagnostic, Example, Rule
from .tmpl000_syntax_error import SyntaxError_
from .tmpl001_missing_markers import MissingMarkers
from .tmpl002_unbalanced_markers import UnbalancedMarkers
from .tmpl003_marker_scope import MarkerScope
from .tmpl004_mask_covers_prompt import MaskCoversPromptCue
from .tmpl005_mask_misses_stop_token import MaskMissesStopToken
from .tmpl006_mask_covers_other_role import MaskCoversOtherRole
from .tmpl007_mask_misses_field import MaskMissesField
from .tmpl008_out_of_sync import OutOfSync
from .tmpl009_not_prefix_preserving import NotPrefixPreserving
from .tmpl010_whitespace_hazard import WhitespaceHazard
from .tmpl011_touching_generation_blocks import TouchingGenerationBlocks
from .tmpl012_straddling_tokens import StraddlingTokens
from .tmpl013_markers_in_default_template import MarkersInDefaultTemplate

RULES: list[Rule] = [
    SyntaxError_(), MissingMarkers(), UnbalancedMarkers(), MarkerScope(), MaskCoversPromptCue(),
    MaskMissesStopToken(), MaskCoversOtherRole(), MaskMissesField(), OutOfSync(), NotPrefixPreserving(),
    WhitespaceHazard(), TouchingGenerationBlocks(), StraddlingTokens(), MarkersInDefaultTemplate(),
]
BY_CODE = {r.code: r for r in RULES}


def select(select: tuple[str, ...] = (), ignore: tuple[str, ...] = ()) -> list[Rule]:
    """Rules whose code starts with one of ``select`` (the default rules when empty) and none of
    ``ignore``; names (``mask-covers-prompt``) work too."""

    def match(rule: Rule, keys) -> bool:
        return any(rule.code.startswith(k.upper()) or rule.name == k for k in keys)

    return [r for r in RULES if (match(r, select) if select else r.default) and not match(r, ignore)]


__all__ = ["BY_CODE", "Context", "Diagnostic", "Example", "RULES", "Rule", "select"]
