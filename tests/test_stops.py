"""The stop belongs to the turn (docs/oracle.md): measured on real corpus templates.

Every test renders real conversations with the original and with tmplc's written template and
checks the rendering is byte-identical and where each masked turn ends.
"""

import json
import re

import pytest
from conftest import CORPUS, PROOF_EXAMPLES, REPO, augmented, read
from real_tokenizers import get_tokenizer
from test_trl_compare import compare

from tmplc import augment
from tmplc.conversations import TOOLS, Case, base_kwargs, tool_call, wrap
from tmplc.render import render
from tmplc.tokens import check_tokens, plain
from tmplc.verification import Renderings, mask_of, merge_spans


def user(i, body="u"):
    return {"role": "user", "content": wrap(i, "c", body)}


def assistant(i, body="a", calls=0):
    m = {"role": "assistant", "content": wrap(i, "c", body)}
    if calls:
        m["tool_calls"] = [tool_call(i, k) for k in range(calls)]
    return m


def tool(i, name_of):
    return {"role": "tool", "tool_call_id": "call0", "name": name_of["tool_calls"][0]["function"]["name"],
            "content": wrap(i, "c", "r")}


def written(name: str) -> str:
    """tmplc's proved training template of a corpus template (augmented once per session, shared
    with test_augment and test_trl_compare: conftest.augmented)."""
    result = augmented(name, PROOF_EXAMPLES, 0)
    assert result.status == "proved", (name, result.status, getattr(result, "message", ""))
    return result.text


def masked(name: str, messages, tools=None, agp=False, **extra):
    """(text, merged generation spans) of the written template; asserts the original renders the
    same text."""
    kwargs = {**base_kwargs(), **extra}
    original = render(read(CORPUS / f"{name}.jinja"), messages, tools, add_generation_prompt=agp, **kwargs)[0]
    text, spans = render(written(name), messages, tools, add_generation_prompt=agp, **kwargs)
    assert text == original
    return text, merge_spans(spans)


def turn_ends(text, spans):
    """The text of each masked span's last 20 characters."""
    return [text[max(a, b - 20):b] for a, b in spans]


GLM = ["trl__glm4moe", "llamacpp__GLM-4.6", "llamacpp__GLM-4.7-Flash"]


@pytest.mark.parametrize("name", GLM)
def test_glm_history_turns_end_with_the_next_role_marker(name):
    a1 = assistant(1)
    a3 = assistant(3, calls=1)
    msgs = [user(0), a1, user(2), a3, tool(4, a3), assistant(5)]
    text, spans = masked(name, msgs, TOOLS)
    ends = turn_ends(text, spans)
    assert len(spans) == 3, ends
    assert ends[0].endswith("<|user|>") and ends[1].endswith("<|observation|>"), ends
    # The final turn: no terminator written, no stop appended by default.
    assert text.endswith("«/5c»") and spans[-1][1] == len(text)
    # The markers after a user/tool message are never masked: only the ones right after a turn.
    masked_chars = {c for a, b in spans for c in range(a, b)}
    for m in re.finditer(r"<\|user\|>|<\|observation\|>", text):
        follows_turn = any(b == m.end() for _, b in spans)
        assert (m.start() in masked_chars) == follows_turn, (m.start(), text[max(0, m.start() - 30):m.end()])


def test_glm_masks_equal_trl_where_both_render_the_same_text():
    """TRL's hand-written glm4moe_training (PRs #5988, #6044) masks the same characters as tmplc on
    every probe where the two render the same text, except the `\\n<think></think>` that the
    generation prompt supplies when thinking is off (TRL masks it; it is prompt)."""
    result, diffs = compare("trl__glm4moe")
    assert result.status == "proved"
    for text, extra, missing in diffs:
        assert not missing
        assert "".join(text[c] for c in extra) == "\n<think></think>"


@pytest.mark.parametrize("name", ["chujiezheng__falcon-instruct", "chujiezheng__amberchat", "chujiezheng__chatqa"])
def test_plain_formats_history_turns_end_with_the_next_header(name):
    text, spans = masked(name, [user(0), assistant(1), user(2), assistant(3)], None)
    assert len(spans) == 2
    first = text[spans[0][0]:spans[0][1]]
    marker = "###Human:" if "amberchat" in name else "User:"
    assert first.endswith(marker), first
    assert not text[spans[1][0]:spans[1][1]].rstrip().endswith(marker)


@pytest.mark.parametrize("name", ["llamacpp__fireworks-ai-llama-3-firefunction-v2",
                                  "llamacpp__fireworks-ai-llama-3-firefunction-v2__first-8b576b6c55"])
def test_header_written_regardless_of_generation_prompt_is_never_masked(name):
    msgs = [user(0), assistant(1), user(2), assistant(3)]
    text, spans = masked(name, msgs, TOOLS, functions="", datetime="")
    header = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert text.endswith("<|eot_id|>" + header)  # the template writes it after the final turn
    assert spans[-1][1] == len(text) - len(header), turn_ends(text, spans)
    assert all(text[a:b].endswith("<|eot_id|>") for a, b in spans)


def test_gptoss_history_turn_masked_as_rendered():
    """Default policy "as rendered": a history turn ends with `<|end|>`, the final one with `<|return|>`."""
    text, spans = masked("trl__gptoss", [user(0), assistant(1), user(2), assistant(3)], None)
    assert len(spans) == 2
    assert text[spans[0][0]:spans[0][1]].endswith("«/1c»<|end|>") and text[:spans[1][1]].endswith("«/3c»<|return|>")


def test_unstopped_final_turn_is_reported_in_one_line():
    result = augment(read(CORPUS / "trl__glm4moe.jinja"), "glm.jinja", examples=10)
    assert result.status == "proved"
    assert any("no stop" in note for note in result.notes), result.notes
    chatml = augment(read(CORPUS / "chujiezheng__chatml.jinja"), "chatml.jinja", examples=10)
    assert chatml.status == "proved" and not chatml.notes


@pytest.mark.parametrize("module", ["oracle", "stops", "plan", "split", "locate", "rewrite", "history", "trace"])
def test_oracle_names_no_model_family(module):
    """No rule that names a model family: in the oracle and in every module that decides where
    markers go, model names appear only in docstrings and comments (as examples)."""
    source = (REPO / "tmplc" / f"{module}.py").read_text(encoding="utf-8")
    names = ["glm", "gemma", "llama", "qwen", "gpt-oss", "gptoss", "harmony", "falcon", "firefunction", "mistral",
             "hermes", "deepseek", "phi", "nemotron", "apertus", "apriel", "rwkv", "chatqa", "amberchat"]
    code = "\n".join(line for line in source.splitlines())
    found = [n for n in names if re.search(rf"\b{re.escape(n)}", code, re.IGNORECASE)]
    # Names may appear in docstrings and comments as examples, never in code or string literals.
    code_only = re.sub(r'"""[\s\S]*?"""|#[^\n]*', "", source)
    assert not [n for n in names if re.search(rf"\b{re.escape(n)}", code_only, re.IGNORECASE)], found


def test_renderings_render_a_conversation_that_is_not_a_prefix():
    """The oracle renders the conversation followed by one sentinel user message (rule 5)."""
    case = Case([user(0), assistant(1)], None, base_kwargs())
    r = Renderings(read(CORPUS / "chujiezheng__chatml.jinja"), case)
    longer = case.messages + [user(2)]
    assert "«2c»" in r.text(longer, False) and "«2c»" not in r.text(case.messages, False)


def test_gemma4_tool_response_stop_masked_and_tool_result_not():
    """Gemma 4 31B writes the tool results inside the assistant turn, after `<|tool_response>`:
    the model emits `<|tool_response>` to hand over, the runtime writes the result, the model
    continues with the content. Masked as rendered: the stop in, the result out, the rest in."""
    name = "llamacpp__google-gemma-4-31B-it"
    a1 = assistant(1, calls=1)
    text, spans = masked(name, [user(0), a1, tool(2, a1), assistant(3)], TOOLS)
    chars = {c for a, b in spans for c in range(a, b)}
    stop = text.index("<|tool_response>")
    assert all(c in chars for c in range(stop, stop + len("<|tool_response>")))
    result = text.index("«2c»")
    assert result not in chars and text.index("response:") not in chars
    assert text.index("«1c»") in chars and text.index("«3c»") in chars


def test_firefunction_still_proved_with_its_trailing_header_out():
    result = augment(read(CORPUS / "llamacpp__fireworks-ai-llama-3-firefunction-v2.jinja"), "ff", examples=PROOF_EXAMPLES)
    assert result.status == "proved"


def test_append_stop_glm_renders_identically_but_for_the_appended_marker():
    source = read(CORPUS / "trl__glm4moe.jinja")
    result = augment(source, "glm.jinja", examples=PROOF_EXAMPLES, append_stop=True)
    assert result.status == "proved", getattr(result, "message", "")
    assert "rendering changed: appends '<|user|>'" in result.text.splitlines()[0]
    a3 = assistant(3, calls=1)
    msgs = [user(0), assistant(1), user(2), a3, tool(4, a3), assistant(5)]
    original = render(source, msgs, TOOLS, add_generation_prompt=False, **base_kwargs())[0]
    text, spans = render(result.text, msgs, TOOLS, add_generation_prompt=False, **base_kwargs())
    assert text == original + "<|user|>"
    ends = turn_ends(text, merge_spans(spans))
    assert ends[0].endswith("<|user|>") and ends[1].endswith("<|observation|>") and ends[2].endswith("«/5c»<|user|>")
    # History turns and prompts render byte for byte like the original.
    for k in range(1, len(msgs)):
        if msgs[k - 1]["role"] != "assistant":
            assert render(result.text, msgs[:k], TOOLS, add_generation_prompt=True, **base_kwargs())[0] == \
                render(source, msgs[:k], TOOLS, add_generation_prompt=True, **base_kwargs())[0]


def test_glm_marker_is_in_the_same_block_as_the_turn():
    """Token level: the next message's marker is inside the turn's own generation block, not a
    block of its own (transformers maps every span separately)."""
    msgs = [user(0), assistant(1, body="🐱"), user(2), assistant(3)]
    text, spans = render(written("trl__glm4moe"), msgs, None, add_generation_prompt=False, **base_kwargs())
    cat = text.index("🐱")
    assert any(a <= cat and text[a:b].endswith("<|user|>") for a, b in spans), [text[a:b] for a, b in spans]


@pytest.mark.parametrize("thinking, prompt_part", [(None, "<think>"), (True, "<think>"), (False, "<think></think>")])
def test_nemotron3_value_split_where_the_generation_prompt_ends(thinking, prompt_part):
    """Nemotron 3 writes `<think></think>` + content in one value; the generation prompt supplies
    `<think>\\n` (thinking on) or `<think></think>` (off): the part the rendering shares is prompt."""
    extra = {} if thinking is None else {"enable_thinking": thinking}
    text, spans = masked("trl__nemotron_3_nano", [user(0), assistant(1), user(2), assistant(3)], None, **extra)
    assert len(spans) == 2
    for a, b in spans:
        assert text[:a].endswith("<|im_start|>assistant\n" + prompt_part), text[a - 40:a]
        assert text[a:b].endswith("<|im_end|>\n")


def test_lint_tmpl005_uses_the_same_stop():
    """TMPL005 goes through the same oracle: a GLM training template that masks the content but
    not the next message's `<|user|>` is reported there; tmplc's written template is clean."""
    from tmplc.lint import lint_source
    from tmplc.rules import select

    source = read(CORPUS / "trl__glm4moe.jinja")
    naive = source.replace("{{ '\\n' + content.strip() }}",
                           "{% generation %}{{ '\\n' + content.strip() }}{% endgeneration %}")
    assert naive != source
    found = [d for d in lint_source(naive, "naive_training.jinja", select(("TMPL005",)), training=True)]
    assert any("'<|user|>'" in d.message for d in found), [d.message for d in found]
    assert not lint_source(written("trl__glm4moe"), "glm_training.jinja", select(("TMPL005",)), training=True)


@pytest.mark.parametrize("name", ["chujiezheng__chatml", "trl__llama3", "trl__gptoss"])
def test_policy_last_turn_masks_only_a_final_assistant_turn(name):
    source = read(CORPUS / f"{name}.jinja")
    result = augment(source, name, examples=PROOF_EXAMPLES, policy="last-turn")
    assert result.status == "proved", getattr(result, "message", "")
    assert "masks: last-turn" in result.text.splitlines()[0]
    msgs = [user(0), assistant(1), user(2), assistant(3)]
    original = render(source, msgs, None, add_generation_prompt=False, **base_kwargs())[0]
    text, spans = render(result.text, msgs, None, add_generation_prompt=False, **base_kwargs())
    assert text == original
    spans = merge_spans(spans)
    assert len(spans) == 1 and "«3c»" in text[spans[0][0]:spans[0][1]] and "«1c»" not in text[spans[0][0]:spans[0][1]]
    # A conversation that ends with a user message trains nothing.
    _, none = render(result.text, msgs[:3], None, add_generation_prompt=True, **base_kwargs())
    assert not merge_spans(none)


def _touching(spans):
    """Pairs of generation spans (in render order, unmerged) where one ends where the next starts."""
    ordered = sorted(s for s in spans if s[1] > s[0])
    return [(a, b) for a, b in zip(ordered, ordered[1:]) if a[1] == b[0]]


@pytest.mark.parametrize("name, stop", [("llamacpp__Apertus-8B-Instruct", "<|assistant_end|>"),
                                        ("llamacpp__Apertus-8B-Instruct__first-34fcc5a4ac", "<|assistant_end|>"),
                                        ("llamacpp__Apriel-1.6-15b-Thinker-fixed", "\n<|end|>"),
                                        ("llamacpp__Apriel-1.6-15b-Thinker-fixed__first-566059a26b", "\n<|end|>")])
def test_turn_written_from_two_places_is_one_block(name, stop):
    """Apertus writes a turn's `<|assistant_end|>` from the next message's loop iteration; Apriel
    1.6 writes content, tool calls and `\\n<|end|>` from blocks that `set` statements and a block
    writing `\\n<|end|>` + `\\n` separate. Each history turn must be one generation span ending with
    its stop (two spans that touch lose tokens at the seam in transformers)."""
    a3 = assistant(3, calls=1)
    a3["tool_calls"][0]["function"]["arguments"] = json.dumps(a3["tool_calls"][0]["function"]["arguments"])  # Apriel
    for msgs, tools in (([user(0), assistant(1), user(2), assistant(3)], None),
                        ([user(0), a3, tool(4, a3), assistant(5), user(6), assistant(7)], None)):
        kwargs = base_kwargs()
        original = render(read(CORPUS / f"{name}.jinja"), msgs, tools, add_generation_prompt=False, **kwargs)[0]
        text, spans = render(written(name), msgs, tools, add_generation_prompt=False, **kwargs)
        assert text == original
        assert not _touching(spans), [(text[a[0]:a[1]][-20:], text[b[0]:b[1]][:20]) for a, b in _touching(spans)]
        followed_by_user = "«1c»" if len(msgs) == 4 else "«5c»"  # the history turn a user message follows
        turn = next(text[a:b] for a, b in spans if followed_by_user in text[a:b])
        assert turn.startswith(followed_by_user) and turn.endswith(stop), turn


DGEMMA = "trl__diffusion_gemma"


def test_closing_tag_of_a_message_header_ends_a_turn_that_wrote_its_own_header():
    """DiffusionGemma writes tool results inside the assistant turn; an assistant after a tool
    message writes its own `<|turn>model\\n` (the generation prompt after a tool result is empty),
    so that turn opens `<|turn>` itself. `<turn|>` after it still ends the turn (`<|turn>` opens
    every message's header, `<|turn>user`): the next message's `<|turn>` is not masked."""
    source = read(CORPUS / f"{DGEMMA}.jinja")
    a3 = assistant(3, calls=1)
    msgs = [user(0), assistant(1), user(2), a3, tool(4, a3), assistant(5), user(6)]
    case = Case(msgs, TOOLS, base_kwargs())
    oracle = Renderings(source, case).oracle()
    text = oracle.text
    prompt = render(source, msgs[:5], TOOLS, add_generation_prompt=True, **base_kwargs())[0]
    assert prompt.endswith("«/3c»<turn|>\n")  # no generation prompt after a tool result
    start, end = oracle.turns[5]
    assert text[start:end] == "<|turn>model\n«5c»a«/5c»<turn|>\n"
    assert text[end:].startswith("<|turn>user\n«6c»")


@pytest.mark.parametrize("calls", [1, 2])
def test_diffusion_gemma_history_turn_and_next_header_are_one_block(calls):
    """DiffusionGemma under the default policy: a history turn's content (written after its tool
    results) is followed directly by the next assistant's own `<|turn>model\n`, written `calls + 1`
    loop iterations later (the tool messages write nothing). tmplc writes that header inside the
    turn's block: one span runs from the content into the next turn, the rendering is unchanged,
    the masks are the oracle's, and transformers loses no token of an emoji that ends the content
    (two blocks meeting there lost its other byte tokens)."""
    source = read(CORPUS / f"{DGEMMA}.jinja")
    a1 = assistant(1, body="a \U0001F600", calls=calls)
    msgs = [user(0), a1, *[tool(2 + k, a1) for k in range(calls)], assistant(2 + calls), user(3 + calls)]
    case = Case(msgs, TOOLS, base_kwargs())
    oracle = Renderings(source, case).oracle()
    text, spans = render(written(DGEMMA), msgs, TOOLS, add_generation_prompt=False, **base_kwargs())
    assert text == oracle.text
    assert not [(a, b) for a, b in _touching(spans) if not text[a[1] - 1].isascii()]  # the proof allows ASCII seams
    assert mask_of(spans) == oracle.mask()
    turn = next(text[a:b] for a, b in merge_spans(spans) if "«1c»" in text[a:b])
    assert f"\U0001F600«/1c»<|turn>model\n«{2 + calls}c»" in turn
    report = check_tokens(get_tokenizer("qwen3"), written(DGEMMA), plain(case))
    assert report.ok and report.lost == report.added == 0, report.detail


def _final_turn(source, msgs):
    """The final assistant turn as generated: the rendering after what it shares with the prompt
    (a half-matched tag excluded)."""
    prompt = render(source, msgs[:-1], TOOLS, add_generation_prompt=True, **base_kwargs())[0]
    text = render(source, msgs, TOOLS, add_generation_prompt=False, **base_kwargs())[0]
    k = 0
    while k < min(len(prompt), len(text)) and prompt[k] == text[k]:
        k += 1
    if text.rfind("<", 0, k) > text.rfind(">", 0, k):  # `<` of `<turn|>` vs `<|turn>`: not shared
        k = text.rfind("<", 0, k)
    return text, k


@pytest.mark.parametrize("calls", [1, 2])
def test_diffusion_gemma_last_turn_policy(calls):
    """DiffusionGemma under `--policy last-turn`: the final turn's tool calls are written in an
    inner loop (the message loop's `loop.last` is shadowed there); only the final assistant turn is
    masked, through its `<turn|>`, its own header included when it follows a tool result."""
    source = read(CORPUS / f"{DGEMMA}.jinja")
    result = augment(source, DGEMMA, examples=PROOF_EXAMPLES, policy="last-turn")
    assert result.status == "proved", getattr(result, "message", "")
    a1, a3 = assistant(1, calls=calls), assistant(3, calls=calls)
    a3["reasoning_content"] = wrap(3, "r", "think")
    convs = [
        [user(0), a1, *[tool(2 + k, a1) for k in range(calls)], assistant(2 + calls)],
        [user(0), assistant(1), user(2), a3],
        [user(0), a1, *[tool(2 + k, a1) for k in range(calls)], assistant(2 + calls), user(3 + calls),
         assistant(4 + calls)],
    ]
    for msgs in convs:
        text, start = _final_turn(source, msgs)
        out, spans = render(result.text, msgs, TOOLS, add_generation_prompt=False, **base_kwargs())
        assert out == text
        assert merge_spans(spans) == [(start, len(text))], (text[start:], merge_spans(spans))
        assert text.endswith("<turn|>\n" if msgs[-1].get("tool_calls") is None else "<|tool_response>")
    # After a tool result the final turn starts with its own header.
    text, start = _final_turn(source, convs[0])
    assert text[start:].startswith("<|turn>model\n«")
