"""tmplc.conversations: sentinel field spans and the final generation-prompt rule."""

import pytest

from tmplc.conversations import Case, field_spans, sentinel, wrap


def spans_text(text: str) -> dict[int, list[str]]:
    return {i: sorted(text[a:b] for a, b in s) for i, s in field_spans(text).items()}


FIELDS = [
    ("«0c»hi«/0c»", {0: ["«0c»hi«/0c»"]}, "one-field"),
    ("pre «0c»hi«/0c» post", {0: ["«0c»hi«/0c»"]}, "surrounding-text-excluded"),
    ("«1c»a«/1c»«1n0»f«/1n0»", {1: ["«1c»a«/1c»", "«1n0»f«/1n0»"]}, "two-fields-one-message"),
    ("«0c»x«/0c»«1c»y«/1c»", {0: ["«0c»x«/0c»"], 1: ["«1c»y«/1c»"]}, "two-messages"),
    ("«2c»abc", {2: ["«2c»"]}, "missing-closer-spans-the-opener-only"),
    ("«0c»x«/0c» «0c»y«/0c»", {0: ["«0c»x«/0c»"]}, "repeated-field-first-occurrence-only"),
    ("«0c»a«0c»b«/0c»", {0: ["«0c»a«0c»b«/0c»"]}, "repeated-opener-keeps-the-first"),
    ("x«/0c»", {}, "closer-without-opener-ignored"),
    ("«hello» «» «/x»", {}, "non-sentinel-guillemets-ignored"),
    ("«12a3»v«/12a3»", {12: ["«12a3»v«/12a3»"]}, "multi-digit-index-and-field-number"),
    ("«0c»«1c»x«/1c»«/0c»", {0: ["«0c»«1c»x«/1c»«/0c»"], 1: ["«1c»x«/1c»"]}, "nested-fields"),
    ("«0c»a\nb«/0c»", {0: ["«0c»a\nb«/0c»"]}, "newline-inside-field"),
    ('{"city": "«1a0»Paris«/1a0»"}', {1: ["«1a0»Paris«/1a0»"]}, "inside-json"),
]


@pytest.mark.parametrize("text, expected", [r[:2] for r in FIELDS], ids=[r[2] for r in FIELDS])
def test_field_spans(text, expected):
    assert spans_text(text) == expected


def test_field_spans_offsets_are_characters():
    text = "é😀«0c»x«/0c»"
    assert field_spans(text) == {0: [(2, 2 + len("«0c»x«/0c»"))]}


@pytest.mark.parametrize(
    "index, name, closing, expected",
    [(0, "c", False, "«0c»"), (3, "a1", True, "«/3a1»")],
    ids=["opener", "closer"],
)
def test_sentinel(index, name, closing, expected):
    assert sentinel(index, name, closing) == expected


def test_wrap_round_trips_through_field_spans():
    text = "<x>" + wrap(4, "r", "thinking") + "</x>"
    assert spans_text(text) == {4: ["«4r»thinking«/4r»"]}


FULL_AGP = [
    (["user"], True, True, "ends-with-user-flag-on"),
    (["user"], False, False, "ends-with-user-flag-off"),
    (["user", "assistant"], True, False, "ends-with-assistant-never"),
    (["user", "assistant"], False, False, "ends-with-assistant-flag-off"),
    (["user", "assistant", "tool"], True, True, "ends-with-tool"),
    (["system"], True, True, "ends-with-system"),
]


@pytest.mark.parametrize("roles, agp, expected", [r[:3] for r in FULL_AGP], ids=[r[3] for r in FULL_AGP])
def test_full_agp(roles, agp, expected):
    case = Case([{"role": r, "content": "x"} for r in roles], add_generation_prompt=agp)
    assert case.full_agp is expected


def test_case_render_uses_full_agp_by_default():
    tmpl = "{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}[GP]{% endif %}"
    case = Case([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], add_generation_prompt=True)
    assert case.render(tmpl)[0] == "ua"
    assert case.render(tmpl, case.messages[:1])[0] == "u"
    assert case.render(tmpl, case.messages[:1], agp=True)[0] == "u[GP]"
