"""Every corpus template gets an outcome from the closed set; docs/coverage.md is generated from it."""


import pytest

from conftest import CORPUS, REPO
from tmplc import corpus
from tmplc.locate import REASONS

EXAMPLES = 25


@pytest.fixture(scope="module")
def rows():
    return corpus.run(CORPUS, examples=EXAMPLES, seed=0)


def test_every_template_has_an_outcome(rows):
    assert len(rows) == len(list(CORPUS.glob("*.jinja")))
    for r in rows:
        assert r["outcome"] in ("proved", "verified", "unsupported"), r
        if r["outcome"] == "unsupported":
            assert r["reason"] in REASONS, r  # never an internal error
            assert r["message"], r


def test_issue_targets_proved(rows):
    by_file = {r["file"]: r for r in rows}
    for name in ["trl__qwen2_5", "trl__qwen2_5_vl", "trl__qwen3_vl", "trl__qwen3_instruct_2507", "trl__lfm2",
                 "trl__idefics3", "trl__phi3", "trl__phi3_5", "trl__cohere", "trl__cohere2", "trl__llava_next",
                 "llamacpp__LFM2-8B-A1B", "llamacpp__LFM2.5-Instruct", "llamacpp__Qwen-QwQ-32B",
                 "llamacpp__Qwen-Qwen3-0.6B"]:
        assert by_file[f"{name}.jinja"]["outcome"] == "proved", by_file[f"{name}.jinja"]


def test_glm_class_reported(rows):
    by_file = {r["file"]: r for r in rows}
    assert by_file["trl__glm4moe.jinja"]["reason"] == "stop-token-in-next-message"


def test_coverage_doc_is_current(rows, update_goldens):
    """docs/coverage.md must be regenerated (`tmplc corpus ... --markdown`) when outcomes change."""
    expected = corpus.markdown(rows, 25, 0)
    path = REPO / "docs" / "coverage.md"
    if update_goldens:
        path.write_text(expected, encoding="utf-8")
    doc = path.read_text(encoding="utf-8")
    strip = lambda text: [line for line in text.splitlines() if "median seconds" not in line]  # noqa: E731
    assert strip(doc) == strip(expected)
