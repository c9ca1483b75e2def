"""tmplc.plan: the simplest separating condition, and nodes that cannot sit in a generation block."""

import pytest

from tmplc.locate import IN, OUT, Labelled
from tmplc.plan import _blocking, _references, _set_names, find_condition
from tmplc.render import render
from tmplc.syntax import parse
from tmplc.trace import Atom, Emission

ROLE = Atom(0, "role", 'm.role == "assistant"')
CONTENT = Atom(0, "content", "m.content")
FIRST = Atom(0, "first", "loop.first")
LAST_A = Atom(-1, "last_assistant", 'messages and messages[-1].role == "assistant"')


def item(label, **values) -> Labelled:
    atoms = {{"role": ROLE, "content": CONTENT, "first": FIRST, "last_a": LAST_A}[k]: v for k, v in values.items()}
    return Labelled(Emission(0, 0, 1, atoms), label)


CONDITIONS = [
    ([item(IN, role=True), item(OUT, role=False)], [ROLE, FIRST],
     '(m.role == "assistant")', "single-literal-atom-with-spaces-is-parenthesised"),
    ([item(IN, role=True, first=False), item(OUT, role=True, first=True)], [ROLE, FIRST],
     "not loop.first", "negated-literal"),
    ([item(IN, role=True, content=True), item(OUT, role=True, content=False), item(OUT, role=False, content=True)],
     [ROLE, CONTENT], '(m.role == "assistant") and m.content', "and-of-two-literals"),
    ([item(IN, content=True, first=True), item(IN, content=False, first=False), item(OUT, content=False, first=True)],
     [CONTENT, FIRST], "m.content or not loop.first", "qwen25-shared-newline-or"),
    ([item(IN, role=True, last_a=True), item(OUT, role=False, last_a=False)], [ROLE, LAST_A],
     '(m.role == "assistant")', "single-literal-before-pairs-first-allowed-wins"),
    ([item(IN, role=True, last_a=True), item(OUT, role=False, last_a=False)], [LAST_A, ROLE],
     '(messages and messages[-1].role == "assistant")', "allowed-order-decides-between-equals"),
    ([item(IN, role=True, first=False), item(OUT, first=True)], [ROLE, FIRST],
     "not loop.first", "atom-missing-from-an-emission-is-not-used"),
]


@pytest.mark.parametrize("items, allowed, expected", [r[:3] for r in CONDITIONS], ids=[r[3] for r in CONDITIONS])
def test_find_condition(items, allowed, expected):
    assert find_condition(items, allowed) == expected


INSEPARABLE = [
    ([item(IN, role=True), item(OUT, role=True)], [ROLE], "same-atoms-in-and-out"),
    ([item(IN, role=True), item(OUT, role=False)], [FIRST], "separating-atom-not-allowed"),
    ([item(IN, role=True), item(OUT, role=False)], [], "no-atoms"),
    ([item(IN, role=True, content=True, first=True), item(IN, role=False, content=False, first=True),
      item(OUT, role=True, content=False, first=True), item(OUT, role=False, content=True, first=True)],
     [ROLE, CONTENT, FIRST], "xor-needs-more-than-two-literals"),
]


@pytest.mark.parametrize("items, allowed", [r[:2] for r in INSEPARABLE], ids=[r[2] for r in INSEPARABLE])
def test_find_condition_none(items, allowed):
    assert find_condition(items, allowed) is None


@pytest.mark.parametrize("items, allowed", [r[:2] for r in CONDITIONS], ids=[r[3] for r in CONDITIONS])
def test_found_condition_separates_when_evaluated_by_jinja(items, allowed):
    """The returned Jinja text, evaluated with each emission's atom values, is true exactly on *in*."""
    cond = find_condition(items, allowed)
    for it in items:
        m = {"role": "assistant" if it.emission.atoms.get(ROLE) else "user",
             "content": "c" if it.emission.atoms.get(CONTENT) else ""}
        messages = [{"role": "assistant" if it.emission.atoms.get(LAST_A) else "user"}]
        first = it.emission.atoms.get(FIRST, False)
        src = "{% set loop = namespace(first=" + str(first) + ") %}{{ 'T' if (" + cond + ") else 'F' }}"
        got = render(src, messages, m=m)[0]
        assert got == ("T" if it.label == IN else "F"), (cond, it.emission.atoms)


# --- _blocking -----------------------------------------------------------------------------------

BLOCKING = [
    ("{% set x = 1 %}", True, "set-of-a-variable"),
    ("{% set ns.x = 1 %}", False, "set-of-a-namespace-attribute"),
    ("{% break %}", True, "break"),
    ("{% continue %}", True, "continue"),
    ("{% include 'x' %}", True, "include"),
    ("{% import 'x' as y %}", True, "import"),
    ("{% from 'x' import y %}", True, "from-import"),
    ("{% extends 'x' %}", True, "extends"),
    ("{% do x.append(1) %}", False, "do-statement"),
    ("{% macro f() %}{% endmacro %}", True, "macro-block"),
    ("{% set s %}x{% endset %}", True, "set-block"),
    ("{% block b %}{% endblock %}", True, "block-block"),
    ("{% for m in x %}{% set y = 1 %}{% endfor %}", False, "for-is-entered-never-blocking"),
    ("{% if x %}{% set y = 1 %}{% endif %}", True, "if-containing-set"),
    ("{% if x %}a{% else %}{% set y = 1 %}{% endif %}", True, "else-branch-containing-set"),
    ("{% if x %}{% set ns.y = 1 %}{% endif %}", False, "if-containing-namespace-set"),
    ("{% if x %}{% if y %}{% break %}{% endif %}{% endif %}", True, "nested-break"),
    ("{% if x %}{% for m in y %}{% set z = 1 %}{% endfor %}{% endif %}", False, "set-inside-for-inside-if"),
    ("{{ x }}", False, "output"),
    ("text", False, "text"),
]


@pytest.mark.parametrize("src, expected", [r[:2] for r in BLOCKING], ids=[r[2] for r in BLOCKING])
def test_blocking(src, expected):
    assert _blocking(parse(src).body[0]) is expected


@pytest.mark.parametrize(
    "before, node, after, changes",
    [
        ("", "{% set x = 'X' %}", "{{ x }}", True),
        ("{% set ns = namespace(x='') %}", "{% set ns.x = 'X' %}", "{{ ns.x }}", False),
        ("{% set x = 'X' %}", "{% if true %}{% set x = 'Y' %}{% endif %}", "{{ x }}", True),
    ],
    ids=["set-in-generation-is-lost", "namespace-set-survives", "set-in-if-in-generation-is-lost"],
)
def test_blocking_matches_jinja_scoping(before, node, after, changes):
    """Why: a generation block's body is a separate scope (evidence for the table above)."""
    plain = render(before + node + after, [])[0]
    wrapped = render(before + "{% generation %}" + node + "{% endgeneration %}" + after, [])[0]
    assert (plain != wrapped) is changes
    assert _blocking(parse(node).body[0]) is changes


def test_set_read_only_inside_the_block_is_unchanged_by_it():
    """Why a confined ``set`` may sit in a generation block (Planner.confined): the block's scope
    holds the name for every read inside it, and nothing outside reads it."""
    src = "{% set x = 'X' %}{{ x }}-{% if true %}{% set y = x ~ 'Y' %}{{ y }}{% endif %}"
    assert render(src, [])[0] == render("{% generation %}" + src + "{% endgeneration %}", [])[0] == "X-XY"


SET_NAMES = [
    ("{% set x = 1 %}", {"x"}, "plain"),
    ("{% set a, b = 1, 2 %}", {"a", "b"}, "tuple"),
    ("{% set ns.x = 1 %}", set(), "namespace-attribute"),
    ("{% if c %}{% set x = y %}{% else %}{% set z = 1 %}{% endif %}", {"x", "z"}, "nested-in-clauses"),
    ("{% set s %}x{% endset %}", None, "set-block-always-blocks"),
    ("{% if c %}{% break %}{% endif %}", None, "break-always-blocks"),
    ("{{ x }}", set(), "output"),
]


@pytest.mark.parametrize("src, expected", [r[:2] for r in SET_NAMES], ids=[r[2] for r in SET_NAMES])
def test_set_names(src, expected):
    assert _set_names(parse(src).body[0]) == expected


def test_references_are_names_not_attributes():
    src = "{% set x = m.x %}{{ x ~ y.x }}{% if x %}{% endif %}"
    refs = _references(parse(src))
    assert {"m", "x", "y"} <= set(refs)
    assert [src[p] for p in refs["x"]] == ["x", "x", "x"]  # `m.x` and `y.x` are attributes, not reads of x
