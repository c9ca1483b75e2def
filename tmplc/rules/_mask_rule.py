"""Shared shape of the mask rules (TMPL004-TMPL007): one diagnostic per template node."""

from __future__ import annotations

from ..conversations import readable
from .base import Context, Rule


class MaskRule(Rule):
    kind = ""
    what = ""

    def check(self, ctx: Context):
        if not ctx.analysed.has_markers:
            return
        seen: set[int] = set()
        for found in ctx.masks.found:
            d = found.defect
            node = d.node or 0
            if d.kind != self.kind or node in seen:
                continue
            seen.add(node)
            turn = f"assistant message {d.turn}" if d.turn >= 0 else "a conversation"
            yield self.at(ctx, node, f"{self.what} {readable(d.text)[:40]!r} ({turn}, probe with {len(found.case.messages)} messages)")
