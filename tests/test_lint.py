"""`tmplc lint` on real templates: clean on tmplc's output, TRL's measured defects found."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import CORPUS, REPO

from tmplc.cli import main
from tmplc.lint import lint_source
from tmplc.rules import select

TRAINING = sorted((REPO / "templates").glob("*_training.jinja"))


def run(*args):
    result = CliRunner().invoke(main, ["lint", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.stem)
def test_clean_on_generated_templates(path):
    diags = lint_source(path.read_text(encoding="utf-8"), str(path), select())
    assert diags == []


def _findings(name):
    path = CORPUS / f"{name}.jinja"
    return {(d.code, d.line) for d in lint_source(path.read_text(encoding="utf-8"), str(path), select())}


def test_trl_qwen2_5_training_masks_cue_newline():
    found = _findings("trl__qwen2_5_training")
    # `{{- '\n' + message.content + ...}}` and `{{- '\n' + message.content }}` inside the markers.
    assert ("TMPL004", 33) in found and ("TMPL004", 36) in found


def test_trl_gptoss_training_masks_start_assistant_cue():
    found = _findings("trl__gptoss_training")
    assert ("TMPL004", 317) in found  # "<|start|>assistant<|channel|>final<|message|>" + content


def test_trl_diffusion_gemma_training_misses_tool_response():
    found = _findings("trl__diffusion_gemma_training")
    assert ("TMPL005", 386) in found  # {{- '<|tool_response>' -}} after the tool calls


def test_lint_never_imports_heavy_modules(tmp_path):
    code = (
        "import sys\n"
        "from tmplc.cli import main\n"
        "try:\n    main(['lint', sys.argv[1]])\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('transformers', 'torch', 'hypothesis') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(CORPUS / "trl__qwen2_5_training.jinja")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_exit_codes_and_formats(tmp_path):
    good = REPO / "templates" / "qwen2_5_training.jinja"
    assert run(good)[0] == 0
    code, out = run(CORPUS / "trl__qwen2_5_training.jinja", "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert {d["code"] for d in data} >= {"TMPL004"} and all(d["path"].endswith(".jinja") for d in data)
    code, out = run(CORPUS / "trl__qwen2_5_training.jinja", "--format", "github")
    assert code == 1 and out.startswith("::error file=") and "title=TMPL004" in out
    code, out = run(CORPUS / "trl__qwen2_5_training.jinja", "--ignore", "TMPL004")
    assert code == 0
    bad = tmp_path / "x.jinja"
    bad.write_bytes(b"\xff{{ x }}")
    proc = subprocess.run([sys.executable, "-m", "tmplc", "lint", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not UTF-8" in proc.stderr


def test_directory_and_tokenizer_config(tmp_path):
    (tmp_path / "sub").mkdir()
    shutil.copy(REPO / "templates" / "phi3_5_training.jinja", tmp_path / "sub" / "a_training.jinja")
    cfg = {"chat_template": [{"name": "default", "template": "{% for m in messages %}{{ m.content }}"}]}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    code, out = run(tmp_path)
    assert code == 1
    assert "tokenizer_config.json#chat_template[default]:1:1: TMPL000" in out


def test_out_of_sync_with_header_source(tmp_path):
    shutil.copy(REPO / "templates" / "phi3_5_training.jinja", tmp_path / "phi3_5_training.jinja")
    original = (REPO / "templates" / "phi3_5.jinja").read_text()
    (tmp_path / "phi3_5.jinja").write_text(original)
    assert run(tmp_path / "phi3_5_training.jinja")[0] == 0
    (tmp_path / "phi3_5.jinja").write_text(original.replace("<|end|>", "<|end|> "))
    code, out = run(tmp_path / "phi3_5_training.jinja")
    assert code == 1 and "TMPL008" in out and "phi3_5.jinja" in out


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_pre_commit_hook(tmp_path):
    """The repo's own hook through `pre-commit try-repo`: pass, then fail on lost/misplaced markers."""
    proj = tmp_path / "proj"
    proj.mkdir()
    _git(proj, "init", "-q")
    target = proj / "qwen2_5_training.jinja"
    good = (REPO / "templates" / "qwen2_5_training.jinja").read_text()
    target.write_text(good)
    _git(proj, "add", ".")
    _git(proj, "commit", "-qm", "training template")

    def hook():
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["PRE_COMMIT_HOME"] = str(tmp_path / "cache")
        proc = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "tmplc-lint", "--files",
                               target.name], cwd=proj, capture_output=True, text=True, timeout=900, env=env)
        return proc.returncode, proc.stdout + proc.stderr

    code, out = hook()
    assert code == 0, out

    lines = good.split("\n")
    assert "{% endgeneration +%}" in lines[47]
    lines[47] = lines[47].replace("{% endgeneration +%}", "")
    target.write_text("\n".join(lines))
    code, out = hook()
    assert code == 1, out
    assert "qwen2_5_training.jinja:35:" in out and "TMPL002" in out

    # Move the '\n' of the cue from the prompt copy into the generation block.
    lines = good.split("\n")
    assert lines[27].strip() == "{{- '\\n' }}" and lines[35].strip().startswith("{#- prompt +#}")
    lines[27] = lines[27].replace("{{- '\\n' }}", "")
    lines[35] = lines[35].replace("{#- prompt +#}", "{{- '\\n' }}")
    target.write_text("\n".join(lines))
    code, out = hook()
    assert code == 1, out
    assert "qwen2_5_training.jinja:36:" in out and "TMPL004" in out
