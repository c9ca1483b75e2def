"""Render the probe set recording, for every generation span, the line of its ``{% generation %}`` tag.

Used by the token rules (TMPL011, TMPL012). The environment is :func:`tmplc.render.environment`'s
settings, filters and globals, with a generation extension that also passes the tag's line; spans
are character offsets of the rendering, computed as transformers' ``AssistantTracker`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..analysed import Analysed
from ..conversations import Case
from ..render import _TRACKING, environment, render


class _LinedGeneration(jinja2.ext.Extension):
    """``{% generation %}`` recording ``(start, end, line)``: the body renders unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_support", [jinja2.nodes.Const(lineno)])
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _support(self, lineno, caller):
        rv = caller()
        state = _TRACKING.get()
        if state is not None:
            blocks, spans = state
            start = len("".join(blocks))
            spans.append((start, start + len(rv), lineno))  # type: ignore[arg-type]
        return rv


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    base = environment()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_LinedGeneration, jinja2.ext.loopcontrols])
    env.filters["tojson"] = base.filters["tojson"]
    for name in ("raise_exception", "strftime_now", "dict", "namespace"):
        env.globals[name] = base.globals[name]
    return env


@dataclass
class LinedRender:
    case: Case
    text: str
    spans: list[tuple[int, int, int]]  # (start, end, line of the {% generation %} tag), render order


def lined_renders(analysed: Analysed, cases: list[Case] | None = None) -> list[LinedRender]:
    """Render ``cases`` (default: every probe and its assistant-ending prefixes); conversations
    the template refuses are skipped."""
    try:
        tpl = _environment().from_string(analysed.source)
    except jinja2.TemplateError:
        return []
    out = []
    for case in analysed.probes_and_prefixes if cases is None else cases:
        try:
            text, spans = render(tpl, case.messages, case.tools, add_generation_prompt=case.full_agp, **case.kwargs)
        except Exception:  # noqa: BLE001 - the template refuses this conversation
            continue
        out.append(LinedRender(case, text, list(spans)))  # type: ignore[arg-type]
    return out
