"""CLI contract: exit codes, one-line errors, nothing written on failure, atomic writes."""

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import CORPUS, REPO

from tmplc.cli import main


def run(*args):
    result = CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def workdir(tmp_path):
    shutil.copy(CORPUS / "trl__phi3.jinja", tmp_path / "phi3.jinja")
    return tmp_path


def test_augment_writes_training_template(workdir):
    src = workdir / "phi3.jinja"
    before = src.read_bytes()
    code, out = run("augment", src, "--examples", "20")
    assert code == 0, out
    dest = workdir / "phi3_training.jinja"
    assert dest.exists() and "wrote" in out
    assert src.read_bytes() == before
    assert "proof: 20 examples, seed 0" in dest.read_text().splitlines()[0]


def test_check_writes_nothing(workdir):
    code, out = run("augment", workdir / "phi3.jinja", "--check", "--examples", "10")
    assert code == 0, out
    assert not (workdir / "phi3_training.jinja").exists()


def test_output_option_and_tokenizer_config(tmp_path):
    tmpl = (CORPUS / "trl__qwen2_5.jinja").read_text()
    cfg = tmp_path / "tokenizer_config.json"
    cfg.write_text(json.dumps({"chat_template": [{"name": "default", "template": tmpl}]}))
    out = tmp_path / "out"
    out.mkdir()
    code, text = run("augment", cfg, "-o", out, "--examples", "10")
    assert code == 0, text
    assert (out / "chat_template_default_training.jinja").exists()


def test_unsupported_exit_1_with_counterexample(tmp_path):
    shutil.copy(CORPUS / "llamacpp__Reka-Edge.jinja", tmp_path / "reka.jinja")
    code, out = run("augment", tmp_path / "reka.jinja", "--examples", "10")
    assert code == 1
    assert "unsplittable-output" in out and "minimal conversation" in out
    assert not (tmp_path / "reka_training.jinja").exists()


def test_glm_note_and_append_stop(tmp_path):
    """GLM writes no end-of-turn text: augment says so in one line; --append-stop declares the
    appended marker in the written header (TRL PR #6044)."""
    shutil.copy(CORPUS / "trl__glm4moe.jinja", tmp_path / "glm.jinja")
    code, out = run("augment", tmp_path / "glm.jinja", "--examples", "10")
    assert code == 0 and out.count("note:") == 1 and "--append-stop" in out
    code, out = run("augment", tmp_path / "glm.jinja", "--examples", "10", "--append-stop")
    assert code == 0 and "note:" not in out
    head = (tmp_path / "glm_training.jinja").read_text(encoding="utf-8").splitlines()[0]
    assert "rendering changed: appends '<|user|>' after a final assistant turn" in head


@pytest.mark.parametrize(
    "name, content, where",
    [
        ("empty.jinja", b"", ":1:1: empty template"),
        ("trunc.jinja", b"{% for m in messages %}{{ m.content", ":1:24:"),
        ("unclosed.jinja", b"{% for m in messages %}\n{{ m.content }}\n", ":1:1: unclosed 'for'"),
        ("latin1.jinja", "{{ 'caf\u00e9' }}".encode("latin-1"), ":1:8: not UTF-8"),
    ],
)
def test_bad_input_exit_2_one_line(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "tmplc", "augment", str(path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(str(path)) and where in lines[0], lines[0]
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_directory_is_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tmplc", "augment", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "is a directory" in proc.stderr
    assert list(tmp_path.iterdir()) == []
