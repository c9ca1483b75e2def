"""The renderer matches transformers' render_jinja_template (text and generation spans)."""

import pytest

from conftest import corpus_files, read
from tmplc.analysed import Analysed

chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_matches_transformers(path):
    source = read(path)
    cases = Analysed(source, path.name).probes
    compared = 0
    for case in cases:
        try:
            ours = case.render(source, agp=case.add_generation_prompt)
        except Exception as exc:  # noqa: BLE001
            with pytest.raises(type(exc)):
                chat_template_utils.render_jinja_template(
                    [case.messages], tools=case.tools, chat_template=source,
                    add_generation_prompt=case.add_generation_prompt, return_assistant_tokens_mask=True, **case.kwargs)
            continue
        texts, spans = chat_template_utils.render_jinja_template(
            [case.messages], tools=case.tools, chat_template=source,
            add_generation_prompt=case.add_generation_prompt, return_assistant_tokens_mask=True, **case.kwargs)
        assert ours[0] == texts[0]
        assert [tuple(s) for s in ours[1]] == [tuple(s) for s in spans[0]]
        compared += 1
