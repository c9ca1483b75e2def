"""Issue 10: hostile inputs, partial failures, time budgets — never a traceback, never a stray write.

Each test is one case a hostile tester found; the CLI runs in a subprocess, as a user runs it
(exit code, stderr lines, files on disk). ``snapshot`` lists every file under a directory, so
"nothing written" includes temporary files and ``.hypothesis/``.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO

CHATML = (REPO / "templates" / "chatml.jinja").read_text(encoding="utf-8")
REKA = (REPO / "tests" / "corpus" / "llamacpp__Reka-Edge.jinja").read_text(encoding="utf-8")  # unsupported (exit 1)


def tmplc(*args, cwd=None, timeout=240, env=None):
    """Run ``python -m tmplc ARGS`` and return ``(code, stdout, stderr, seconds)``."""
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tmplc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_no_traceback(*outputs):
    for text in outputs:
        assert "Traceback" not in text, text


def assert_one_line(code, err, expected_code=2):
    assert code == expected_code, err
    assert len(err.strip().splitlines()) == 1, err
    assert_no_traceback(err)


def config(tmp_path, items, name="tokenizer_config.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"chat_template": items}, indent=1), encoding="utf-8")
    return path


# ---------------------------------------------------------------- 1. names from tokenizer_config.json

@pytest.mark.parametrize("name", ["/../../../ESCAPED", "../up", "a/b", "a\x00b", "", ".hidden", "a b", "x" * 65, 5])
def test_unsafe_names_are_bad_input_and_nothing_is_written(tmp_path, name):
    root = tmp_path / "proj"
    (root / "out").mkdir(parents=True)
    cfg = config(root, [{"name": name, "template": CHATML}])
    before = snapshot(tmp_path)
    code, out, err, _ = tmplc("augment", cfg, "-o", root / "out", "--examples", "5")
    assert_one_line(code, err)
    assert "safe file-name stem" in err
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.parent.glob("ESCAPED*"))


@pytest.mark.parametrize("items, message", [
    ([{"name": "x", "template": CHATML}, {"name": "x", "template": CHATML}], "duplicate chat_template name"),
    ([], "empty list"),
    ([{"name": "x", "template": 5}], "not a string"),
])
def test_bad_template_lists_exit_2_in_augment_and_lint(tmp_path, items, message):
    cfg = config(tmp_path, items)
    before = snapshot(tmp_path)
    for command in ("augment", "lint"):
        code, out, err, _ = tmplc(command, cfg, *(["--examples", "5"] if command == "augment" else []))
        assert_one_line(code, err)
        assert message in err and err.startswith(str(cfg)), err
    assert snapshot(tmp_path) == before


def test_safe_names_still_work(tmp_path):
    cfg = config(tmp_path, [{"name": "tool_use-v1.2", "template": CHATML}])
    code, out, err, _ = tmplc("augment", cfg, "--examples", "5")
    assert code == 0, out + err
    assert (tmp_path / "chat_template_tool_use-v1.2_training.jinja").exists()


# ---------------------------------------------------------------- 2. tracebacks

def nested(depth: int) -> str:
    return ("{% for m in messages %}<|im_start|>{{ m.role }}\n" + "{% if true %}" * depth + "{{ m.content }}"
            + "{% endif %}" * depth + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
            "{% endif %}")


@pytest.mark.parametrize("depth", [96, 200, 2000])
def test_deep_nesting_is_unsupported_not_a_traceback(tmp_path, depth):
    path = tmp_path / "deep.jinja"
    path.write_text(nested(depth))
    code, out, err, _ = tmplc("augment", path, "--examples", "5")
    assert code == 1, out + err
    assert "too-deeply-nested" in out and "unsupported" in out
    assert_no_traceback(out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.jinja"]


@pytest.mark.parametrize("depth", [200, 2000])
def test_lint_reports_what_jinja2_cannot_compile(tmp_path, depth):
    path = tmp_path / "deep.jinja"
    path.write_text(nested(depth))
    code, out, err, _ = tmplc("lint", path)
    assert code == 1, out + err
    assert "TMPL000" in out and "nested too deeply" in out
    assert_no_traceback(out, err)


def test_unwritable_output_directory_is_reported_before_the_proof(tmp_path):
    src = tmp_path / "chatml.jinja"
    src.write_text(CHATML)
    if os.geteuid() == 0:  # root writes anywhere chmod allows; /proc refuses new files even to root
        out = "/proc/"
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o555)
    code, stdout, err, seconds = tmplc("augment", src, "-o", out, "--examples", "100000", timeout=120)
    assert_one_line(code, err)
    assert "cannot create files" in err
    assert "proved" not in stdout  # checked before the proof, which would take minutes


def test_unreadable_input_is_one_line(tmp_path):
    fifo = tmp_path / "pipe.jinja"
    os.mkfifo(fifo)  # reading it would block forever
    code, out, err, _ = tmplc("augment", fifo, timeout=60)
    assert_one_line(code, err)
    assert "not a regular file" in err
    if os.geteuid() != 0:
        locked = tmp_path / "locked.jinja"
        locked.write_text(CHATML)
        locked.chmod(0)
        code, out, err, _ = tmplc("augment", locked)
        assert_one_line(code, err)
        assert "cannot read" in err


def test_lint_source_that_is_a_directory_is_one_line(tmp_path):
    (tmp_path / "a_training.jinja").write_text(CHATML)
    code, out, err, _ = tmplc("lint", tmp_path / "a_training.jinja", "--source", tmp_path)
    assert_one_line(code, err)
    assert "is a directory" in err


def test_error_excerpt_with_a_newline_stays_on_one_line(tmp_path):
    path = tmp_path / "quote.jinja"
    path.write_text("{{ 'a'' }}\n  x\n")
    for command in ("augment", "lint"):
        code, out, err, _ = tmplc(command, path)
        if command == "augment":
            assert_one_line(code, err)
            assert "\\n" in err
        else:
            assert code == 1 and "TMPL000" in out
            assert out.splitlines()[0].startswith(f"{path}:1:") and "\\n" in out.splitlines()[0]


# ---------------------------------------------------------------- 3. all or nothing

def test_several_inputs_one_malformed_writes_nothing(tmp_path):
    (tmp_path / "a.jinja").write_text(CHATML)
    (tmp_path / "b.jinja").write_text("{% for m in messages %}{{ m.content }}")
    before = snapshot(tmp_path)
    code, out, err, _ = tmplc("augment", tmp_path / "a.jinja", tmp_path / "b.jinja", "--examples", "5")
    assert_one_line(code, err)
    assert "b.jinja" in err
    assert snapshot(tmp_path) == before


def test_json_list_second_template_malformed_writes_nothing(tmp_path):
    cfg = config(tmp_path, [{"name": "a", "template": CHATML}, {"name": "b", "template": "{{ m.content "}])
    before = snapshot(tmp_path)
    code, out, err, _ = tmplc("augment", cfg, "--examples", "5")
    assert_one_line(code, err)
    assert "#chat_template[b]" in err
    assert snapshot(tmp_path) == before


def test_one_unsupported_input_writes_nothing_and_exits_1(tmp_path):
    (tmp_path / "a.jinja").write_text(CHATML)
    (tmp_path / "reka.jinja").write_text(REKA)
    before = snapshot(tmp_path)
    code, out, err, _ = tmplc("augment", tmp_path / "a.jinja", tmp_path / "reka.jinja", "--examples", "5")
    assert code == 1, out + err
    assert "a.jinja: proved" in out and "unsplittable-output" in out
    assert "nothing written: 1 of 2 templates failed" in out
    assert snapshot(tmp_path) == before


def test_several_inputs_all_pass_all_written(tmp_path):
    (tmp_path / "a.jinja").write_text(CHATML)
    (tmp_path / "b.jinja").write_text(CHATML)
    code, out, err, _ = tmplc("augment", tmp_path / "a.jinja", tmp_path / "b.jinja", "--examples", "5", "--json")
    assert code == 0, out + err
    records = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["written"]).name for r in records] == ["a_training.jinja", "b_training.jinja"]
    assert (tmp_path / "a_training.jinja").exists() and (tmp_path / "b_training.jinja").exists()


# ---------------------------------------------------------------- 4. files

def test_new_file_mode_follows_umask_and_existing_mode_is_kept(tmp_path):
    src = tmp_path / "chatml.jinja"
    src.write_text(CHATML)
    dest = tmp_path / "chatml_training.jinja"
    umask = "import os, runpy, sys; os.umask(0o022); sys.argv = ['tmplc'] + sys.argv[1:]; runpy.run_module('tmplc', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", umask, "augment", str(src), "--examples", "5"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    dest.chmod(0o640)
    code, out, err, _ = tmplc("augment", src, "--examples", "5")
    assert code == 0, out + err
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640


def test_output_with_trailing_slash_is_a_directory(tmp_path):
    src = tmp_path / "chatml.jinja"
    src.write_text(CHATML)
    code, out, err, _ = tmplc("augment", src, "-o", f"{tmp_path / 'newdir'}/", "--examples", "5")
    assert_one_line(code, err)
    assert "no such directory" in err
    assert not (tmp_path / "newdir").exists()
    (tmp_path / "newdir").mkdir()
    code, out, err, _ = tmplc("augment", src, "-o", f"{tmp_path / 'newdir'}/", "--examples", "5")
    assert code == 0, out + err
    assert (tmp_path / "newdir" / "chatml_training.jinja").exists()


def test_check_writes_nothing_in_the_project(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "chatml.jinja").write_text(CHATML)
    before = snapshot(project)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HYPOTHESIS_STORAGE_DIRECTORY": ""}
    code, out, err, _ = tmplc("augment", "chatml.jinja", "--check", "--examples", "5", cwd=project, env=env)
    assert code == 0, out + err
    assert snapshot(project) == before
    assert not (project / ".hypothesis").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_write_leaves_no_temporary_file(tmp_path, sig):
    """The signal arrives between writing the temporary file and renaming it."""
    script = f"""
import os, signal, sys
from pathlib import Path
from tmplc import containers
real = os.replace
def replace(a, b):
    os.kill(os.getpid(), {int(sig)})
    return real(a, b)
containers.os.replace = replace
containers.atomic_write(Path(sys.argv[1]), "text")
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x_training.jinja")], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode != 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------- 5. time budget

def chatml_with(prefix: str = "", assistant: str = "") -> str:
    return (prefix + "{% for m in messages %}<|im_start|>{{ m.role }}\n"
            "{% if m.role == 'assistant' %}" + assistant + "{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


HOSTILE = {
    "nested-range": chatml_with("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
    "nested-range-no-calls": chatml_with("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}"
                                         "{% endfor %}"),
    "assistant-range": chatml_with(assistant="{% for i in range(99999) %}{% endfor %}"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_render_timeout(tmp_path, case):
    path = tmp_path / "hostile.jinja"
    path.write_text(HOSTILE[case])
    code, out, err, seconds = tmplc("augment", path, "--timeout", "3", timeout=120)
    assert code == 1, out + err
    assert "render-timeout" in out and "conversation being rendered" in out
    assert_no_traceback(out, err)
    assert seconds < 60  # 3 s of rendering plus start-up on a busy machine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.jinja"]


def test_huge_rendering_is_refused(tmp_path):
    path = tmp_path / "big.jinja"
    path.write_text(chatml_with().replace("{{ m.content }}", "{{ m.content }}" + "x" * 5_000_000))
    code, out, err, seconds = tmplc("augment", path, "--timeout", "60", timeout=200)
    assert code == 1, out + err
    assert "render-too-large" in out
    assert_no_traceback(out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jinja"]


def test_lint_stays_fast_on_hostile_templates(tmp_path):
    for name, text in HOSTILE.items():
        (tmp_path / f"{name}.jinja").write_text(text)
    code, out, err, seconds = tmplc("lint", tmp_path, timeout=120)
    assert code in (0, 1), out + err
    assert_no_traceback(out, err)
    assert seconds < 30


def test_budget_without_signals_in_a_thread():
    """Off the main thread there is no SIGALRM: the deadline is checked at every call."""
    from tmplc.render import RenderTimeout, budget, render

    outcome = []

    def work():
        t0 = time.monotonic()
        try:
            with budget(0.5):
                render(HOSTILE["nested-range"], [{"role": "user", "content": "hi"}])
        except RenderTimeout as exc:
            outcome.append((exc.reason, time.monotonic() - t0))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert outcome and outcome[0][0] == "render-timeout" and outcome[0][1] < 5


def test_budget_limits_do_not_change_ordinary_renders():
    from tmplc.render import budget, render

    text = "{{ 'ab' * 3 }}{{ [1] * 2 }}{{ 2 ** 10 }}{{ 3 * 'x' }}"
    expected = render(text, [])
    with budget(10):
        assert render(text, []) == expected == ("ababab[1, 1]1024xxx", [])


def test_power_and_repetition_are_refused_before_they_are_computed():
    from tmplc.render import RenderTooLarge, budget, render

    for text in ("{{ 9 ** (9 ** 9) }}", "{{ 'x' * 10 ** 12 }}", "{{ [0] * 10 ** 12 }}"):
        with pytest.raises(OverflowError):  # an ordinary template error outside a budget (lint)
            render(text, [])
        with pytest.raises(RenderTooLarge), budget(10):
            render(text, [])


def test_lone_surrogate_and_overlong_output_name_are_bad_input(tmp_path):
    cfg = tmp_path / "tokenizer_config.json"
    cfg.write_text(json.dumps({"chat_template": "{{ '\udcff' }}"}))
    code, out, err, _ = tmplc("augment", cfg)
    assert_one_line(code, err)
    assert "lone surrogate" in err
    long = tmp_path / ("a" * 240 + ".jinja")
    long.write_text(CHATML)
    code, out, err, _ = tmplc("augment", long, "--examples", "5")
    assert_one_line(code, err)
    assert "file name too long" in err and "proved" not in out


def test_lint_budget_stops_a_hostile_training_template(monkeypatch):
    """A template with markers is rendered by the mask rules: a loop that never ends is cut off."""
    from tmplc import lint, rules

    monkeypatch.setattr(lint, "LINT_TIMEOUT", 1.0)
    training = (REPO / "templates" / "chatml_training.jinja").read_text(encoding="utf-8")
    hostile = "{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}" + training
    t0 = time.monotonic()
    diags = lint.lint_source(hostile, "x_training.jinja", rules.select((), ()), True)
    assert time.monotonic() - t0 < 30
    assert any("not checked: render-timeout" in d.message and d.severity == "error" for d in diags), diags
