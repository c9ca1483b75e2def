"""Typed outcomes fail closed: an internal error is Unsupported(internal-error), never a traceback."""

import json

from click.testing import CliRunner
from conftest import CORPUS, read

from tmplc import augment, corpus, rewrite
from tmplc.cli import main
from tmplc.compiler import Proved, Unsupported, Verified
from tmplc.reasons import REASONS, Reason


def broken_cleanup(text):
    return text + "{% if %}"  # what a bug in the rewrite could leave behind: uncompilable Jinja


def test_outcome_types_on_real_templates():
    proved = augment(read(CORPUS / "trl__phi3.jinja"), "phi3.jinja", examples=10)
    assert isinstance(proved, Proved) and proved.ok and proved.text.startswith("{# tmplc ")
    verified = augment(read(CORPUS / "trl__qwen3_vl_training.jinja"), "t.jinja", examples=10)
    assert isinstance(verified, Verified) and verified.ok
    refused = augment(read(CORPUS / "llamacpp__Reka-Edge.jinja"), "reka.jinja", examples=10)
    assert isinstance(refused, Unsupported) and not refused.ok and refused.text is None
    assert refused.reason in Reason and refused.reason.value in REASONS


def test_broken_rewrite_is_an_internal_error(monkeypatch):
    monkeypatch.setattr(rewrite, "cleanup", broken_cleanup)
    result = augment(read(CORPUS / "trl__phi3.jinja"), "phi3.jinja", examples=10)
    assert isinstance(result, Unsupported)
    assert result.reason is Reason.INTERNAL_ERROR
    assert "TemplateSyntaxError" in result.message or "Jinja syntax error" in result.message
    assert "Traceback" in result.trace


def test_cli_reports_internal_error_with_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(rewrite, "cleanup", broken_cleanup)
    src = tmp_path / "phi3.jinja"
    src.write_text(read(CORPUS / "trl__phi3.jinja"), encoding="utf-8")
    out = CliRunner().invoke(main, ["augment", str(src), "--examples", "10"])
    assert out.exit_code == 1
    assert "[internal-error]" in out.output and "please report it" in out.output
    assert "Traceback" not in out.output
    assert not (tmp_path / "phi3_training.jinja").exists()
    verbose = CliRunner().invoke(main, ["augment", str(src), "--examples", "10", "--verbose"])
    assert verbose.exit_code == 1 and "Traceback" in verbose.output
    as_json = CliRunner().invoke(main, ["augment", str(src), "--examples", "10", "--json"])
    assert json.loads(as_json.output.splitlines()[-1])["reason"] == "internal-error"


def test_corpus_counts_internal_errors(monkeypatch, tmp_path):
    monkeypatch.setattr(rewrite, "cleanup", broken_cleanup)
    (tmp_path / "phi3.jinja").write_text(read(CORPUS / "trl__phi3.jinja"), encoding="utf-8")
    rows = corpus.run(tmp_path, examples=10, jobs=1)
    assert [r["reason"] for r in rows] == ["internal-error"]
    assert corpus.summary(rows)["internal_errors"] == 1
