"""Shared shape of the mask rules (TMPL004-TMPL007): one diagnostic per template node."""

from __future__ import annotations

from .base import Context, Rule


class MaskRule(Rule):
    kind = ""
    what = ""

    def check(self, ctx: Context):
        from ..render import has_markers

        if not has_markers(ctx.source):
            return
        seen: set[int] = set()
        for d in ctx.masks.defects:
            if d.kind != self.kind or d.offset in seen:
                continue
            seen.add(d.offset)
            turn = f"assistant message {d.turn}" if d.turn >= 0 else "a conversation"
            yield self.at(ctx, d.offset, f"{self.what} {d.text[:40]!r} ({turn}, probe with {len(d.case.messages)} messages)")
