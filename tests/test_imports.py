"""The import graph of tmplc/: which module may import which.

Every ``import``/``from ... import`` in every module of ``tmplc/`` is read with ``ast`` — at module
level, inside functions and under ``if TYPE_CHECKING`` alike — and resolved to a tmplc module
(``from . import compiler`` → ``compiler``; ``from . import __version__`` → the package ``tmplc``).

The intended layering, lowest first::

    errors ← syntax ← render ← conversations ← probes ← trace, oracle ← verification ← analysed
           ← history ← locate ← split, plan ← rewrite ← strategies/prove ← compiler ← corpus, show ← export ← cli

with the modules that layering does not name slotted where their imports put them (``edits``
beside ``render``, ``reasons`` beside ``probes``, ``containers`` beside ``syntax``). A module may
import modules of lower layers only; modules of one layer never import each other, except inside
the ``rules`` package. Deviations of the real graph from that order are listed in
``KNOWN_DEVIATIONS`` with why they are harmless; each must still exist (a stale entry fails).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "tmplc"

# Lowest layer first. "rules.*" stands for the rules package and every module in it.
LAYERS: list[set[str]] = [
    {"errors"},
    {"syntax", "syntax.cst", "containers"},
    {"render", "edits"},
    {"conversations"},
    {"probes", "reasons", "tokens"},  # tokens: token-level masks (transformers loaded lazily)
    {"trace", "oracle"},
    {"verification"},
    {"analysed"},
    {"history"},  # --prefix-preserving: fixes the conditions that render history differently (uses analysed)
    {"locate"},
    {"split", "plan"},
    {"stops"},  # moves a next message's opening marker into the previous turn's block (uses plan)
    {"rewrite"},
    {"strategies"},
    {"prove"},
    {"compiler"},
    {"tmplc"},  # the package __init__: the public API (augment, verify) loads compiler lazily
    {"corpus"},
    {"show"},  # the mask viewer: augment + the verification core
    {"export"},  # upstream export: proves (compiler) and shows the sample mask (show)
    {"rules.*"},
    {"lint"},
    {"cli"},
    {"__main__"},
]
# Layers whose modules may import each other.
SAME_LAYER_OK = {"rules.*"}
# The package `syntax` re-exports `syntax.cst`.
PACKAGE_REEXPORTS = {("syntax", "syntax.cst")}

NEVER_FROM_LINT = {"compiler", "cli", "corpus", "prove", "strategies", "rewrite"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

# (importer, imported): edges the layering above forbids but that are harmless, with the reason.
KNOWN_DEVIATIONS: dict[tuple[str, str], str] = {
    ("rewrite", "tmplc"): (
        "rewrite reads `__version__` with `from . import __version__`; the package __init__ imports "
        "compiler only inside its lazy __getattr__, so the cycle rewrite → tmplc → compiler → rewrite "
        "never runs at import time"
    ),
    ("__main__", "cli"): "`python -m tmplc` is the one importer of cli: the entry point, above cli",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) if parts else "tmplc"


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def all_modules() -> set[str]:
    return {module_name(p) for p in PKG.rglob("*.py")}


def _resolve(importer: str, package: bool, level: int, target: str | None) -> str:
    """The tmplc module a relative import names ("" parts joined; "tmplc" is the package)."""
    base = [] if importer == "tmplc" else importer.split(".")
    if not package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    parts = base + (target.split(".") if target else [])
    return ".".join(parts) if parts else "tmplc"


def imports_of(source: str, importer: str, package: bool, known: set[str]) -> tuple[set[str], set[str]]:
    """``(tmplc modules, top-level third-party/stdlib names)`` imported anywhere in ``source``."""
    internal: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tmplc" or alias.name.startswith("tmplc."):
                    internal.add(alias.name.removeprefix("tmplc.") if alias.name != "tmplc" else "tmplc")
                else:
                    external.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module == "tmplc" or (node.module or "").startswith("tmplc."):
                    mod = "tmplc" if node.module == "tmplc" else node.module.removeprefix("tmplc.")
                else:
                    external.add((node.module or "").split(".")[0])
                    continue
            else:
                mod = _resolve(importer, package, node.level, node.module)
            # `from . import compiler` imports the submodule; `from . import __version__` the package.
            for alias in node.names:
                sub = alias.name if mod == "tmplc" else f"{mod}.{alias.name}"
                internal.add(sub if sub in known else mod)
    return internal, external


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    known = all_modules()
    edges: dict[str, set[str]] = {}
    ext: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        name = module_name(path)
        internal, external = imports_of(path.read_text(encoding="utf-8"), name, is_package(path), known)
        edges[name] = internal - {name}
        ext[name] = external
    return edges, ext


def layer_of(module: str) -> int:
    key = "rules.*" if module == "rules" or module.startswith("rules.") else module
    for i, layer in enumerate(LAYERS):
        if key in layer:
            return i
    raise KeyError(module)


def violations(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges that break the layering (unknown modules are violations too)."""
    out = []
    for a, targets in edges.items():
        for b in targets:
            if (a, b) in PACKAGE_REEXPORTS:
                continue
            try:
                la, lb = layer_of(a), layer_of(b)
            except KeyError:
                out.append((a, b))
                continue
            same_ok = la == lb and any(k in SAME_LAYER_OK for k in LAYERS[la])
            if lb > la or (lb == la and not same_ok):
                out.append((a, b))
    return sorted(out)


def lint_side_violations(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    out = []
    for a, targets in edges.items():
        if a == "lint" or a == "rules" or a.startswith("rules."):
            out += [(a, b) for b in targets if b in NEVER_FROM_LINT]
    return sorted(out)


def importers_of_cli(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, "cli") for a, t in edges.items() if "cli" in t)


EDGES, EXTERNAL = graph()


def test_every_module_has_a_layer():
    unplaced = []
    for m in sorted(EDGES):
        try:
            layer_of(m)
        except KeyError:
            unplaced.append(m)
    assert unplaced == []


@pytest.mark.parametrize(
    "importer, imported",
    [
        ("syntax.cst", "errors"),
        ("trace", "edits"),
        ("reasons", "conversations"),  # under `if TYPE_CHECKING`: still read
        ("cli", "compiler"),  # function-level
        ("cli", "corpus"),  # function-level
        ("tmplc", "compiler"),  # function-level, in the package's __getattr__
        ("rewrite", "tmplc"),  # `from . import __version__` names the package
        ("rules.docs", "rules"),  # `from . import RULES` inside a package
        ("rules.base", "rules.masks"),
        ("rules.masks", "analysed"),  # `from ..analysed import`
    ],
    ids=lambda v: v,
)
def test_reader_sees_edge(importer, imported):
    assert imported in EDGES[importer]


def test_layering_holds_except_known_deviations():
    assert [v for v in violations(EDGES) if v not in KNOWN_DEVIATIONS] == []


@pytest.mark.parametrize("edge", sorted(KNOWN_DEVIATIONS), ids=lambda e: f"{e[0]}->{e[1]}")
def test_known_deviation_still_exists(edge):
    """A deviation that was fixed must leave the list, so the layering test gets strict again."""
    assert edge in violations(EDGES) + importers_of_cli(EDGES)


def test_containers_imports_only_errors_and_stdlib():
    assert EDGES["containers"] == {"errors"}
    assert EXTERNAL["containers"] <= STDLIB


def test_rules_and_lint_never_import_the_augment_path():
    assert lint_side_violations(EDGES) == []


def test_nothing_imports_cli_but_the_entry_point():
    assert importers_of_cli(EDGES) == [("__main__", "cli")]


def _closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += EDGES.get(m, ())
    return seen


def import_time_externals(source: str) -> set[str]:
    """Top-level names of the third-party modules ``source`` imports when it is imported: module
    and class level, not inside functions (a lazy import runs only when its function is called)
    nor under ``if TYPE_CHECKING``."""
    out: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                out.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
            visit([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)])

    visit(ast.parse(source).body)
    return out


def test_lint_path_never_imports_hypothesis_transformers_torch_rich_at_import_time():
    """What lint imports, module by module, never pulls a heavy package at import time; the
    token rule's lazy ``transformers`` import runs only with ``lint --tokenizer`` (the subprocess
    test in tests/test_lint.py checks a real run)."""
    heavy = {"hypothesis", "transformers", "torch", "rich"}
    found = {}
    for m in _closure("lint"):
        path = PKG / (m.replace(".", "/") + ".py")
        if not path.exists():
            path = PKG / m.replace(".", "/") / "__init__.py"
        hit = import_time_externals(path.read_text(encoding="utf-8")) & heavy
        if hit:
            found[m] = hit
    assert found == {}


# --- the checker itself fails on bad edges --------------------------------------------------------


@pytest.mark.parametrize(
    "fake_edge, checker",
    [
        (("rules.base", "cli"), "lint_side"),
        (("rules.base", "cli"), "cli_importers"),
        (("rules.base", "cli"), "layers"),
        (("lint", "compiler"), "lint_side"),
        (("rules.tmpl004_mask_covers_prompt", "strategies"), "lint_side"),
        (("errors", "syntax"), "layers"),
        (("render", "conversations"), "layers"),
        (("trace", "oracle"), "layers"),  # same layer, not allowed
        (("split", "plan"), "layers"),  # same layer, not allowed
        (("verification", "analysed"), "layers"),
        (("oracle", "verification"), "layers"),
        (("compiler", "corpus"), "layers"),
        (("containers", "render"), "layers"),
        (("syntax.cst", "newmodule"), "layers"),  # a module with no layer
    ],
    ids=lambda v: "->".join(v) if isinstance(v, tuple) else v,
)
def test_checker_reports_fake_edge(fake_edge, checker):
    a, b = fake_edge
    edges = {k: set(v) for k, v in EDGES.items()}
    edges.setdefault(a, set()).add(b)
    found = {"lint_side": lint_side_violations, "cli_importers": importers_of_cli, "layers": violations}[checker](edges)
    assert fake_edge in found


def test_checker_reads_function_level_and_relative_imports():
    src = "import json\nfrom ..errors import InputError\ndef f():\n    from ..cli import main\n    import hypothesis\n"
    internal, external = imports_of(src, "rules.base", False, all_modules())
    assert internal == {"errors", "cli"}
    assert external == {"json", "hypothesis"}


def test_checker_resolves_package_relative_imports():
    # inside rules/__init__.py, `from .base import X` is rules.base; `from .. import cli` is cli
    internal, _ = imports_of("from .base import Rule\nfrom .. import cli\n", "rules", True, all_modules())
    assert internal == {"rules.base", "cli"}
