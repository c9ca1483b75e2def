"""`tmplc show`: the mask of a rendered conversation in the terminal and as an HTML page,
checked in a real headless browser (Debian's chromium through selenium)."""

import json
import os
import shutil
import tempfile

import pytest
from click.testing import CliRunner
from conftest import REPO, UNPROVABLE, qwen2_5_masking_the_cue

from tmplc.cli import main
from tmplc.show import load_conversations, mask_view, sample_case, show, to_html

QWEN3_VL = REPO / "templates" / "qwen3_vl.jinja"
EXAMPLES = "20"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def kinds_text(view, kind):
    return [view.text[a:b] for a, b, k in view.segments if k == kind]


def test_show_original_qwen3_vl_terminal():
    code, out, err = run("show", QWEN3_VL, "--examples", EXAMPLES)
    assert code == 0, err
    assert "augmented by tmplc: proved on 20 examples" in out
    assert "<|im_start|>assistant↵" in out  # newlines made visible
    assert "oracle: the mask equals the oracle's expected mask" in out
    assert "'<|im_start|>assistant\\n'" in out and "'<|im_end|>\\n'" in out  # cue and stop columns


def test_view_kinds_on_qwen3_vl():
    src = QWEN3_VL.read_text(encoding="utf-8")
    result = show(src, str(QWEN3_VL), examples=20)
    (view,) = result.views
    assert view.oracle_agrees is True
    assert set(kinds_text(view, "cue")) == {"<|im_start|>assistant\n"}
    assert kinds_text(view, "stop")[-1] == "<|im_end|>\n"
    assert "It is 18°C and sunny in Paris." in kinds_text(view, "masked")
    masked = "".join(kinds_text(view, "masked") + kinds_text(view, "stop"))
    assert "<|im_start|>" not in masked and "What's the weather" not in masked
    # the segments tile the text in order
    assert "".join(view.text[a:b] for a, b, _ in view.segments) == view.text
    assert [t.message for t in view.turns] == [2, 4, 6]


@pytest.mark.parametrize("path", sorted((REPO / "templates").glob("*_training.jinja")), ids=lambda p: p.stem)
def test_sample_mask_on_every_bundled_training_template(path):
    """The sample conversation on every golden training template: the shown mask is the oracle's,
    every turn ends with a stop after its last field, and cue/stop are unmasked/masked."""
    (view,) = show(path.read_text(encoding="utf-8"), str(path)).views
    assert view.oracle_agrees is True, view.oracle_detail
    assert len(view.turns) >= 2 and all(t.stop for t in view.turns)
    masked = {c for a, b in view.spans for c in range(a, b)}
    for t in view.turns:
        assert set(range(*t.stop)) <= masked
        if t.cue:
            assert not set(range(*t.cue)) & masked and t.cue[1] == t.mask[0]


def test_training_template_with_user_conversations(tmp_path):
    conv = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello!"}]}
    (tmp_path / "c.json").write_text(json.dumps(conv))
    lines = [json.dumps(conv), "", json.dumps({**conv, "messages": conv["messages"][1:]})]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    tpl = REPO / "templates" / "llama3_1_training.jinja"
    code, out, err = run("show", tpl, "--conversation", tmp_path / "c.json", "--html", tmp_path / "one.html")
    assert code == 0, err
    assert "own {% generation %} markers" in out and "'<|eot_id|>'" in out
    code, out, err = run("show", tpl, "--conversation", tmp_path / "c.jsonl", "--html", tmp_path / "two.html")
    assert code == 0, err
    page = (tmp_path / "two.html").read_text(encoding="utf-8")
    assert page.count('<section class="conversation"') == 2
    assert '<span class="seg masked"' in page and '<span class="seg cue"' in page and '<span class="seg stop"' in page
    assert "<script" not in page and "http" not in page.split("<body>")[1]  # self-contained
    cases = load_conversations(tmp_path / "c.jsonl")
    assert len(cases) == 2 and cases[1].messages[0]["role"] == "user"


def test_hand_written_mask_shown_as_it_is():
    """A training template whose markers cover the cue's newline (TRL's qwen2_5 defect, rebuilt
    from tmplc's golden file): show displays its mask and reports the oracle mismatch."""
    bad = qwen2_5_masking_the_cue()
    src = (REPO / "templates" / "qwen2_5.jinja").read_text(encoding="utf-8")
    view = mask_view(bad, sample_case(src), "sample")
    assert view.oracle_agrees is False and "masked but not generated" in view.oracle_detail


@pytest.mark.parametrize(
    "setup, expect_code, expect",
    [
        ("missing-template", 2, "no such file"),
        ("folder-without-template", 2, ":0:0: no chat template"),
        ("malformed-template", 2, ":1:24: unterminated tag"),
        ("unprovable-template", 1, "cannot prove: [raises-on-every-probe]"),
        ("missing-conversation", 2, "no such file"),
        ("bad-json", 2, "c.json:1:15: invalid JSON"),
        ("bad-jsonl-line", 2, "c.jsonl:2:2: invalid JSON"),
        ("no-messages", 2, "c.json:1:1: expected an object with a non-empty 'messages' list"),
        ("template-raises", 2, "the template raises on this conversation"),
    ],
)
def test_bad_input_one_line_nothing_written(tmp_path, setup, expect_code, expect):
    tpl = tmp_path / "t.jinja"
    tpl.write_text(QWEN3_VL.read_text(encoding="utf-8"))
    args = ["show", tpl, "--examples", EXAMPLES, "--html", tmp_path / "out.html"]
    if setup == "missing-template":
        args[1] = tmp_path / "nope.jinja"
    elif setup == "folder-without-template":
        (tmp_path / "model").mkdir()
        args[1] = tmp_path / "model"
    elif setup == "malformed-template":
        tpl.write_text("{% for m in messages %}{{ m.content")
    elif setup == "unprovable-template":
        tpl.write_text(UNPROVABLE)
    elif setup == "missing-conversation":
        args += ["--conversation", tmp_path / "nope.json"]
    elif setup == "bad-json":
        (tmp_path / "c.json").write_text('{"messages": [,]}')
        args += ["--conversation", tmp_path / "c.json"]
    elif setup == "bad-jsonl-line":
        (tmp_path / "c.jsonl").write_text('{"messages": [{"role": "user", "content": "x"}]}\n{oops\n')
        args += ["--conversation", tmp_path / "c.jsonl"]
    elif setup == "no-messages":
        (tmp_path / "c.json").write_text('{"messages": []}')
        args += ["--conversation", tmp_path / "c.json"]
    elif setup == "template-raises":
        tpl.write_text("{% for m in messages %}{% if m.role == 'bad' %}{{ raise_exception('bad role') }}{% endif %}"
                       "{{ m.role }}: {% if m.role == 'assistant' %}{% generation %}{{ m.content }}<end>"
                       "{% endgeneration %}{% else %}{{ m.content }}<end>{% endif %}{% endfor %}")
        (tmp_path / "c.json").write_text('{"messages": [{"role": "bad", "content": "x"}]}')
        args += ["--conversation", tmp_path / "c.json"]
    code, out, err = run(*args)
    assert code == expect_code, (out, err)
    assert expect in err and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    assert not (tmp_path / "out.html").exists()


# ----------------------------------------------------------------------------- browser

def _browser():
    """A headless chromium driven by selenium, or a skip reason."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[test]')"
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (os.path.exists(chromium) and os.path.exists(driver_path)):
        return None, "no browser: apt-get install chromium chromium-driver (.ci/run does)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="tmplc-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1100,1300"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=opts), profile


def test_html_in_headless_browser(tmp_path, update_goldens):
    driver, profile = _browser()
    if driver is None:
        pytest.skip(profile)
    try:
        src = QWEN3_VL.read_text(encoding="utf-8")
        result = show(src, "templates/qwen3_vl.jinja", examples=20)
        page = tmp_path / "show.html"
        page.write_text(to_html(result.views, result.label, result.how), encoding="utf-8")
        driver.get(page.as_uri())
        style = lambda css, prop: driver.execute_script(  # noqa: E731
            "return getComputedStyle(document.querySelector(arguments[0]))[arguments[1]]", css, prop)
        bg = {k: style(f"pre.render .seg.{k}", "backgroundColor") for k in ("masked", "stop", "cue", "prompt")}
        colour = {k: style(f"pre.render .seg.{k}", "color") for k in ("masked", "stop", "cue", "prompt")}
        assert bg["masked"] != bg["prompt"] and bg["stop"] != bg["prompt"] and bg["stop"] != bg["masked"], bg
        assert bg["cue"] == bg["prompt"], bg  # the cue is not trained: no mask background
        assert colour["cue"] != colour["prompt"], colour
        # every masked element is styled the same, and no resource was fetched
        masked_bgs = driver.execute_script(
            "return [...document.querySelectorAll('pre.render .seg.masked')].map(e => getComputedStyle(e).backgroundColor)")
        assert len(masked_bgs) == 3 and set(masked_bgs) == {bg["masked"]}
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        # the text shown is the rendering (with a visible mark per newline)
        shown = driver.execute_script("return document.querySelector('pre.render').textContent")
        assert shown.replace("↵", "") == result.views[0].text
        shot = tmp_path / "show.png"
        driver.save_screenshot(str(shot))
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        print(f"computed backgrounds: {bg}; colours: {colour}")
        if update_goldens:
            shutil.copy(shot, REPO / "docs" / "show.png")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_committed_screenshot_is_a_png():
    data = (REPO / "docs" / "show.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
