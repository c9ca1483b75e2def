"""Generate docs/rules.md from the rule docstrings (``python -m tmplc.rules.docs > docs/rules.md``)."""

from __future__ import annotations

from . import RULES
from .base import SECTIONS, doc_sections


def markdown() -> str:
    out = ["# Lint rules", "", "Generated from the rule docstrings by `python -m tmplc.rules.docs`; do not edit by hand.", "",
           "| code | name | severity | default |", "|---|---|---|---|"]
    for r in RULES:
        out.append(f"| {r.code} | `{r.name}` | {r.severity} | {'yes' if r.default else 'no (`--select`)'} |")
    for r in RULES:
        summary, sections = doc_sections(r.doc())
        out += ["", f"## {r.code} `{r.name}`", "", summary, ""]
        for name in SECTIONS:
            out += [f"**{name}.**", "", *sections.get(name, []), ""]
    return "\n".join(line.rstrip() for line in out).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
