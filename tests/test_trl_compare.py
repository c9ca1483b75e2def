"""tmplc vs TRL's hand-written training templates, judged by the oracle.

Where TRL's `*_training.jinja` renders the same text as its original, its masks are compared
with tmplc's on the probe conversations; every difference must be one where tmplc agrees with
the oracle and TRL does not. Known TRL defects (../shared/design/README.md) must show up.
"""

from functools import cache

import pytest
from conftest import CORPUS, PROOF_EXAMPLES, augmented, read

from tmplc.analysed import Analysed
from tmplc.verification import Renderings, check_case, mask_of

PAIRS = sorted(p.name[: -len("_training.jinja")] for p in CORPUS.glob("trl__*_training.jinja"))


@cache
def compare(name):
    """tmplc's masks on the probes (each asserted equal to the oracle) and the probes where TRL's
    variant renders the same text but masks differently: (text, extra, missing) offsets. Computed
    once per template (the tests below compare four of them again); a failed assertion is not
    cached, a second call fails again."""
    original = Analysed(read(CORPUS / f"{name}.jinja"), name)
    trl = Analysed(read(CORPUS / f"{name}_training.jinja"), f"{name}_training")
    result = augmented(name, PROOF_EXAMPLES, 0)
    if result.status != "proved":
        return result, []
    ours = Analysed(result.text, "tmplc")
    diffs = []
    for case in original.probes_and_prefixes:
        mine = check_case(original.compiled, ours.compiled, case)
        if mine.oracle is None or mine.problem is not None:
            continue
        assert mine.ok, mine.mask_message() or mine.render_diff
        theirs = Renderings(trl.compiled, case).full()
        if getattr(theirs, "text", None) != mine.oracle.text:
            continue  # TRL's variant raises or changes the rendering here: nothing to compare
        expected = mine.oracle.mask()
        extra, missing = sorted(mask_of(theirs.spans) - expected), sorted(expected - mask_of(theirs.spans))
        if extra or missing:
            diffs.append((mine.oracle.text, extra, missing))
    return result, diffs


@pytest.mark.parametrize("name", PAIRS)
def test_differences_are_explained_by_the_oracle(name):
    result, diffs = compare(name)
    # Either tmplc proved the template (then compare() asserted tmplc == oracle on every probe),
    # or it reports a reason from the closed set.
    assert result.status == "proved" or result.reason


def test_qwen2_5_trl_masks_cue_newline():
    _, diffs = compare("trl__qwen2_5")
    assert diffs, "TRL's qwen2_5 training template should differ from the oracle"
    for text, extra, missing in diffs:
        assert not missing
        # Each extra character is the "\n" that ends the "<|im_start|>assistant\n" cue.
        for c in extra:
            assert text[c] == "\n" and text[:c].endswith("<|im_start|>assistant")


def test_diffusion_gemma_trl_misses_tool_response_stop_token():
    original = Analysed(read(CORPUS / "trl__diffusion_gemma.jinja"))
    trl = Analysed(read(CORPUS / "trl__diffusion_gemma_training.jinja"))
    found = False
    for case in original.probes_and_prefixes:
        if not any(m.get("tool_calls") for m in case.messages):
            continue
        # The oracle of the original (its problems aside), against TRL's rendering of the same text.
        oracle = Renderings(original.compiled, case).oracle()
        theirs = Renderings(trl.compiled, case).full()
        if oracle is None or getattr(theirs, "text", None) != oracle.text:
            continue
        missing = sorted(oracle.mask() - mask_of(theirs.spans))
        if any(oracle.text.startswith("<|tool_response>", c) for c in missing):
            found = True
    assert found


def test_deepseekv3_trl_masks_assistant_cue():
    _, diffs = compare("trl__deepseekv3")
    assert diffs
    for text, extra, missing in diffs:
        assert not missing
        runs = "".join(text[c] for c in extra)
        assert runs and set(runs.split("<｜Assistant｜>")) == {""}, runs


def test_qwen3_family_trl_masks_prompt_think_opener():
    """Qwen3.5/3.6's generation prompt ends with `<think>\n`: it is prompt, TRL's variants mask it."""
    for name in ("trl__qwen3_5_think", "trl__qwen3_6"):
        _, diffs = compare(name)
        assert diffs, name
        for text, extra, missing in diffs:
            assert not missing
            starts = [c for c in extra if c - 1 not in extra]
            for c in starts:
                assert text[:c].endswith("<|im_start|>assistant\n") and text.startswith("<think>", c), name
