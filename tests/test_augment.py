"""augment proves and writes the issue's target templates; the result re-verifies."""

import pytest
from conftest import CORPUS, PROOF_EXAMPLES, augmented, read

from tmplc import augment, verify
from tmplc.render import render
from tmplc.rewrite import strip_header

TARGETS = [
    "trl__qwen2_5", "trl__qwen2_5_vl", "trl__qwen3_vl", "trl__qwen3_instruct_2507", "trl__lfm2",
    "trl__idefics3", "trl__phi3", "trl__phi3_5", "trl__cohere", "trl__cohere2", "trl__llava_next",
    "chujiezheng__qwen2.5-instruct",
]


@pytest.mark.parametrize("name", TARGETS)
def test_target_proved(name):
    source = read(CORPUS / f"{name}.jinja")
    result = augmented(name, PROOF_EXAMPLES, 0)
    assert result.status == "proved", (result.reason, result.message)
    assert result.report.valid > 0 and result.report.turns_checked > 0
    assert "{% generation" in result.text or "{%- generation" in result.text or "generation" in result.text
    # The header names the source, version, examples and seed; the body is the original + markers.
    assert result.text.startswith("{# tmplc ")
    assert f"{name}.jinja" in result.text.splitlines()[0]
    # An independent re-check with another seed.
    report = verify(source, result.text, examples=20, seed=1)
    assert report.ok, report.failure and report.failure.message


def test_same_seed_same_output():
    source = read(CORPUS / "trl__qwen2_5.jinja")
    a = augment(source, "q.jinja", examples=20, seed=7)
    b = augment(source, "q.jinja", examples=20, seed=7)
    assert a.text == b.text


def test_qwen2_5_cue_stays_outside():
    """The `\\n` after `<|im_start|>assistant` is prompt: the generation prompt ends with it."""
    source = read(CORPUS / "trl__qwen2_5.jinja")
    text = augment(source, "q.jinja", examples=20).text
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    out, spans = render(text, msgs)
    prompt, _ = render(source, msgs[:1], add_generation_prompt=True)
    assert out.startswith(prompt)
    assert [out[a:b] for a, b in spans] == ["yo<|im_end|>\n"]
    assert spans[0][0] == len(prompt)


def test_existing_markers_verified_and_unchanged():
    source = read(CORPUS / "trl__qwen3_vl_training.jinja")
    result = augment(source, "t.jinja", examples=20)
    # TRL's hand-written Qwen3-VL variant is correct on the oracle: verified, text unchanged.
    assert result.status == "verified", result.message
    assert result.text == source


def test_wrong_markers_rejected():
    source = read(CORPUS / "trl__qwen2_5_training.jinja")
    result = augment(source, "t.jinja", examples=40)
    assert result.status == "unsupported" and result.reason == "proof-failed"
    assert "not generate" in result.message  # the cue's newline is masked


def test_stop_in_next_message_proved():
    """GLM-4-MoE writes no end-of-turn text: its history turns end with the next message's marker
    (docs/oracle.md), so it is proved instead of refused with stop-token-in-next-message."""
    source = read(CORPUS / "trl__glm4moe.jinja")
    result = augment(source, "glm.jinja", examples=20)
    assert result.status == "proved", getattr(result, "message", "")
    assert "<|user|>" in strip_header(result.text).split("{% generation", 1)[-1]


def test_header_round_trip():
    source = read(CORPUS / "trl__phi3.jinja")
    text = augment(source, "phi3.jinja", examples=10).text
    assert "generation" in strip_header(text) and not strip_header(text).startswith("{# tmplc")


def test_proof_reproducible_whatever_the_process_imported():
    """The same seed draws the same conversations in a test run and in the CLI (hypothesis would
    otherwise bias generation with constants from whatever local modules are loaded)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "{imports}\n"
        "from tmplc import augment\n"
        "r = augment(open(sys.argv[1]).read(), 'a', examples=25)\n"
        "print(r.report.examples, r.report.valid, r.report.turns_checked)\n"
    )
    path = str(CORPUS / "chujiezheng__alpaca.jinja")
    outs = {
        subprocess.run([sys.executable, "-c", code.format(imports=imports), path], capture_output=True,
                       text=True, check=True).stdout
        for imports in ("pass", "import hypothesis, tmplc.cli, tmplc.lint, tmplc.rules")
    }
    assert len(outs) == 1, outs
