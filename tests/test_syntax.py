"""Lossless parsing: the round trip is byte-exact on the corpus and on generated templates."""

import pytest
from conftest import corpus_files, read
from hypothesis import assume, given
from hypothesis.extra.lark import from_lark
from lark.exceptions import UnexpectedInput

from tmplc.errors import InputError
from tmplc.syntax import Block, Output, parse
from tmplc.syntax.cst import _parser


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_round_trip(path):
    source = read(path)
    template = parse(source)
    assert template.unparse() == source
    # Every character belongs to exactly one leaf, in order.
    pos = 0
    for leaf in template.leaves():
        assert leaf.start == pos
        pos = leaf.end
    assert pos == len(source)


@given(from_lark(_parser(), start="start"))
def test_generated_round_trip(text):
    # Strings drawn from the grammar can concatenate into a different tokenization
    # (DATA "{" + COMMENT "{##}" lexes as "{{" ...); the claim is on what the lexer accepts.
    try:
        tree = _parser().parse(text)
    except UnexpectedInput:
        assume(False)
    assert "".join(str(t) for t in tree.scan_values(lambda _: True)) == text
    try:
        template = parse(text)
    except InputError:
        return  # unbalanced block tags: reported, never mis-parsed
    assert template.unparse() == text


def test_crlf_and_whitespace_control_kept():
    src = "{%- if x -%}\r\n  {{+ a ~ '}}' }}{# c #}{% raw %}{{ y }}{% endraw %}\r\n{%+ endif +%}"
    t = parse(src)
    assert t.unparse() == src
    (block,) = [n for n in t.body if isinstance(n, Block)]
    assert block.name == "if"
    outputs = [n for n in block.clauses[0].body if isinstance(n, Output)]
    assert outputs[0].left_mod == "+"


@pytest.mark.parametrize(
    "src, line, col, words",
    [
        ("", 1, 1, "empty"),
        ("hello {{ name", 1, 7, "unterminated"),
        ("a\n{% if x %}\nb", 2, 1, "unclosed 'if'"),
        ("{% for m in ms %}{% endif %}", 1, 18, "unexpected 'endif'"),
        ("x\n  {% else %}", 2, 3, "'else' outside"),
    ],
)
def test_malformed_positions(src, line, col, words):
    with pytest.raises(InputError) as info:
        parse(src, "t.jinja")
    err = info.value
    assert (err.line, err.col) == (line, col)
    assert words in err.message
    assert str(err).startswith(f"t.jinja:{line}:{col}: ")
