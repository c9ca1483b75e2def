"""What users read from lint: codes chosen by an error's kind (never by its message text), the
exact tag a diagnostic points at, and no internal sentinel in any message (issue 20, point 3)."""

import ast

import pytest
from click.testing import CliRunner
from conftest import CORPUS, REPO

from tmplc.cli import main
from tmplc.conversations import ANY_SENTINEL_RE, readable
from tmplc.errors import InputError
from tmplc.lint import lint_source
from tmplc.rules import RULES
from tmplc.syntax import parse

TRL_TRAINING = sorted(CORPUS.glob("trl__*_training.jinja"))


def _codes(source: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.col) for d in lint_source(source, "t.jinja", RULES)]


def test_unknown_filter_named_generation_is_a_syntax_error_not_unbalanced_markers(tmp_path):
    # jinja2 cannot compile it; the word "generation" in the message used to make it TMPL002,
    # so --ignore TMPL002 hid a template transformers cannot load.
    assert _codes("{{ messages | generation_filter }}") == [("TMPL000", 1, 1)]
    path = tmp_path / "t.jinja"
    path.write_text("{{ messages | generation_filter }}", encoding="utf-8")
    result = CliRunner().invoke(main, ["lint", "--ignore", "TMPL002", str(path)], catch_exceptions=False)
    assert result.exit_code == 1 and "TMPL000" in result.output


@pytest.mark.parametrize("source, expected", [
    ("{% generation %}x", [("TMPL002", 1, 1)]),
    ("{% for m in messages %}{% generation %}{{ m.content }}{% endfor %}", [("TMPL002", 1, 24)]),
    ("{{ x }}\n{% endgeneration %}", [("TMPL002", 2, 1)]),
    ("{% for m in messages %}{{ m.content }}", [("TMPL000", 1, 1)]),
    ("{% if x %}{{ 'generation' }}", [("TMPL000", 1, 1)]),  # the word in the template, not a marker
    ("", [("TMPL000", 1, 1)]),
])
def test_structural_errors_map_by_kind(source, expected):
    assert _codes(source) == expected


def test_kind_is_set_where_the_error_is_raised_and_survives_with_path():
    with pytest.raises(InputError) as exc:
        parse("{% generation %}x")
    assert exc.value.kind == "markers" and exc.value.with_path("other.jinja").kind == "markers"
    with pytest.raises(InputError) as exc:
        parse("{% if x %}{{ 'generation' }}")
    assert exc.value.kind == "syntax"


def test_touching_blocks_on_one_line_point_at_the_second_tag():
    head = "{% for m in messages %}{% if m.role == 'assistant' %}{{ '<|assistant|>\\n' }}"
    other = "{% else %}{{ '<|' + m.role + '|>\\n' + m.content + '<|end|>\\n' }}{% endif %}{% endfor %}"
    first = "{% generation %}{{ m.content }}{% endgeneration %}"
    source = head + first + "{% generation %}{{ '<|end|>\\n' }}{% endgeneration %}" + other
    found = [d for d in lint_source(source, "t.jinja", RULES) if d.code == "TMPL011"]
    assert [(d.line, d.col) for d in found] == [(1, len(head) + len(first) + 1)]
    assert f"block at 1:{len(head) + 1} ends" in found[0].message


def test_rule_modules_import_no_private_name():
    # TMPL012 took TMPL011's private _line_offset; every shared helper is public now.
    for path in sorted((REPO / "tmplc").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("tmplc")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{path.relative_to(REPO)} imports {private} from {node.module}"


def _messages_of_examples_and_corpus():
    for rule in RULES:
        for ex in rule.examples:
            yield from lint_source(ex.source, ex.path, RULES, training=ex.training or None, original=ex.original)
    for path in TRL_TRAINING:
        yield from lint_source(path.read_text(encoding="utf-8"), str(path), RULES)


def test_no_internal_sentinel_in_any_lint_message():
    messages = [d.message for d in _messages_of_examples_and_corpus()]
    assert len(messages) > 40  # the examples' and TRL's hand-written templates' findings
    leaked = [m for m in messages if "«" in m or "»" in m or ANY_SENTINEL_RE.search(m)]
    assert leaked == []


def test_readable_names_empty_fields_and_drops_cut_sentinels():
    assert readable("«0c»«/0c»<|end|>") == "{empty content of message 0}<|end|>"
    assert readable("«2c»hi 🐱«/2c»\n«3r»«/3r»") == "hi 🐱\n{empty reasoning of message 3}"
    assert readable("0c»ab«/1") == "ab"  # a slice that cut sentinels at both ends
    assert readable("no sentinels here") == "no sentinels here"
