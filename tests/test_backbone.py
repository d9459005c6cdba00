"""Backbones: real upstream classes, tiny configs, ids from the tokenizer, save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

from cocoa.backbone import MASK_TOKEN, Backbone, TokenIds
from cocoa.data.items import Item
from cocoa.encoder import EmbeddingSpec, Encoder
from cocoa.errors import ConfigError

from .conftest import CORPUS, make_backbone


@pytest.mark.parametrize(("family", "cls"), [("qwen2_vl", Qwen2VLForConditionalGeneration),
                                             ("qwen2_5_vl", Qwen2_5_VLForConditionalGeneration)])
def test_tiny_uses_upstream_classes_and_tokenizer_ids(family: str, cls: type) -> None:
    backbone = make_backbone(family)
    assert type(backbone.model) is cls
    tok = backbone.tokenizer
    cfg = backbone.model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert backbone.ids.mask == tok.convert_tokens_to_ids(MASK_TOKEN)
    assert cfg.text_config.vocab_size == len(tok)


def test_presets_have_the_promised_sizes() -> None:
    tiny = Backbone.tiny("tiny", corpus=CORPUS * 20).num_parameters()
    small = Backbone.tiny("small", corpus=CORPUS * 20).num_parameters()
    assert 3e5 < tiny < 2e6
    assert 3e6 < small < 2e7


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown tiny preset 'huge'"):
        Backbone.tiny("huge")


def test_load_rejects_a_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.json is missing"):
        Backbone.load(tmp_path)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_checkpoint_round_trip_gives_identical_embeddings(family: str, tmp_path: Path, image_dir: Path) -> None:
    backbone = make_backbone(family)
    spec = EmbeddingSpec(attention="causal", max_len=128)
    folder = backbone.save(tmp_path / "ckpt")
    spec.save(folder)
    items = [Item("<|image_1|> Represent the given image.", str(image_dir / "a.png")),
             Item("a sneaker next to a bag"), Item("", str(image_dir / "c.png"))]
    before = Encoder(backbone, spec).encode_items(items)
    loaded = Encoder.from_pretrained(folder, device="cpu")
    assert loaded.spec == spec
    assert TokenIds.from_tokenizer(loaded.backbone.tokenizer) == backbone.ids
    assert loaded.backbone.image_processor.size == backbone.image_processor.size
    np.testing.assert_array_equal(loaded.encode_items(items), before)
    assert loaded.fingerprint() == Encoder(backbone, spec).fingerprint()
