"""tmplc.syntax: offsets to 1-based line/column, and node locations for messages."""

import pytest

from tmplc.syntax import LineIndex, parse, targets

POSITION = [
    ("ab\ncd\n", 0, (1, 1), "start"),
    ("ab\ncd\n", 1, (1, 2), "same-line"),
    ("ab\ncd\n", 2, (1, 3), "the-newline-belongs-to-its-line"),
    ("ab\ncd\n", 3, (2, 1), "after-newline"),
    ("ab\ncd\n", 6, (3, 1), "end-after-final-newline"),
    ("ab", 2, (1, 3), "end-without-final-newline"),
    ("a\r\nb", 1, (1, 2), "cr-is-on-its-line"),
    ("a\r\nb", 3, (2, 1), "crlf-counts-one-line"),
    ("é😀x", 2, (1, 3), "columns-in-characters"),
    ("\n\n\n", 2, (3, 1), "empty-lines"),
    ("", 0, (1, 1), "empty-source"),
]


@pytest.mark.parametrize("source, offset, expected", [r[:3] for r in POSITION], ids=[r[3] for r in POSITION])
def test_line_index_position(source, offset, expected):
    assert LineIndex(source).position(offset) == expected


WHERE = [
    ("A\n  {{ x }}", 1, "2:3 '{{ x }}'", "output-on-second-line"),
    ("{{ '" + "x" * 80 + "' }}", 0, "1:1 \"{{ '" + "x" * 56 + "\"", "snippet-cut-at-60-characters"),
    ("é{{ y }}", 1, "1:2 '{{ y }}'", "column-in-characters"),
]


@pytest.mark.parametrize("source, index, expected", [r[:3] for r in WHERE], ids=[r[3] for r in WHERE])
def test_template_where(source, index, expected):
    t = parse(source)
    assert t.where(t.body[index]) == expected


def test_template_where_escapes_a_newline_once():
    t = parse("{% if x %}\nA{% endif %}")
    assert t.where(t.body[0]) == "1:1 '{% if x %}\\nA{% endif %}'"


TARGETS = [
    ("{% set x = 1 %}", [["x"]], "set"),
    ("{% set a, b = 1, 2 %}", [["a"], ["b"]], "set-tuple"),
    ("{% set (a, b) = t %}", [["a"], ["b"]], "set-parenthesised-tuple"),
    ("{% set ns.x = 1 %}", [["ns", ".", "x"]], "namespace-attribute"),
    ("{% set s %}x{% endset %}", [["s"]], "set-block"),
    ("{% for k, v in d.items() %}{% endfor %}", [["k"], ["v"]], "for-tuple"),
    ("{% if x %}{% endif %}", [], "not-an-assignment"),
    ("{{ x }}", [], "output"),
]


@pytest.mark.parametrize("src, expected", [r[:2] for r in TARGETS], ids=[r[2] for r in TARGETS])
def test_targets(src, expected):
    assert [[t.text for t in target] for target in targets(parse(src).body[0])] == expected
