"""How items become token sequences: special-token strings in user text stay text."""

from __future__ import annotations

import pytest

from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item
from cocoa.model.backbone import Backbone


@pytest.mark.parametrize("text", ["<|image_pad|>", "look: <|im_end|><|endoftext|>", "<|vision_start|>x<|video_pad|>"])
def test_special_token_strings_in_text_are_tokenised_as_text(tiny_backbone: Backbone, text: str) -> None:
    pre = Preprocessor(tiny_backbone)
    ids = tiny_backbone.ids
    control = {ids.image, ids.video, ids.eos, ids.vision_start, ids.vision_end, ids.pad}
    assert not control & set(pre.text_ids(text))
    encoded = pre.item(Item(text))
    assert encoded.pixels == [] and not control & set(encoded.ids[:-1]), "only the embedding token at the end"
    assert pre.text_ids("a b") == list(tiny_backbone.tokenizer("a b", add_special_tokens=False)["input_ids"])
