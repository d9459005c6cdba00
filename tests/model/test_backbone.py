"""Backbones: real upstream classes, tiny configs, ids from the tokenizer, save/load round trip."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import numpy as np
import pytest
from transformers import (
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)

from cocoa.core.errors import ConfigError
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.items import Item
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.model.backbone import MASK_TOKEN, Backbone, TokenIds
from tests.helpers import FAMILIES, make_backbone


@pytest.mark.parametrize(("family", "cls"), [("qwen2_vl", Qwen2VLForConditionalGeneration),
                                             ("qwen2_5_vl", Qwen2_5_VLForConditionalGeneration),
                                             ("qwen3_vl", Qwen3VLForConditionalGeneration)])
def test_tiny_uses_upstream_classes_and_tokenizer_ids(family: str, cls: type) -> None:
    backbone = make_backbone(family)
    assert type(backbone.model) is cls
    tok = backbone.tokenizer
    cfg = backbone.model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert backbone.ids.mask == tok.convert_tokens_to_ids(MASK_TOKEN)
    assert cfg.text_config.vocab_size == len(tok)


def test_presets_have_the_documented_sizes() -> None:
    """With a corpus rich enough to fill each preset's vocabulary, the parameter counts are the ones
    docs/results.md quotes (tiny: 0.83M with 2,048 tokens)."""
    rng = random.Random(0)
    corpus = [" ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(50))
              for _ in range(2000)]
    tiny, small = Backbone.tiny("tiny", corpus=corpus), Backbone.tiny("small", corpus=corpus)
    assert (len(tiny.tokenizer), tiny.num_parameters()) == (2048, 829_680)
    assert (len(small.tokenizer), small.num_parameters()) == (4096, 7_631_872)


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown tiny preset 'huge'"):
        Backbone.tiny("huge")


def test_load_rejects_a_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.json is missing"):
        Backbone.load(tmp_path)


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_round_trip_gives_identical_embeddings(family: str, tmp_path: Path, image_dir: Path) -> None:
    backbone = make_backbone(family)
    spec = EmbeddingSpec(PROTOCOLS["cocoa"].replace(attention="causal"), max_len=128)
    folder = backbone.save(tmp_path / "ckpt")
    spec.save(folder)
    items = [Item("<|image_1|> Represent the given image.", str(image_dir / "a.png")),
             Item("a sneaker next to a bag"), Item("", str(image_dir / "c.png"))]
    before = BatchEncoder(backbone, spec).encode_items(items)
    loaded = BatchEncoder.from_pretrained(folder, device="cpu")
    assert loaded.spec == spec
    assert TokenIds.from_tokenizer(loaded.backbone.tokenizer) == backbone.ids
    assert loaded.backbone.image_processor.size == backbone.image_processor.size
    np.testing.assert_array_equal(loaded.encode_items(items), before)
    assert loaded.fingerprint() == BatchEncoder(backbone, spec).fingerprint()


@pytest.mark.parametrize(("family", "patch", "sizes"), [("qwen2_vl", 14, {56: 4, 84: 9, 112: 16}),
                                                        ("qwen3_vl", 16, {56: 4, 84: 9, 112: 16, 300: 36})])
def test_image_processor_follows_the_family_patch_size(family: str, patch: int, sizes: dict[int, int]
                                                       ) -> None:
    backbone = make_backbone(family)
    proc, vision = backbone.image_processor, backbone.model.config.vision_config
    assert proc.patch_size == vision.patch_size == patch and proc.merge_size == vision.spatial_merge_size == 2
    for side, tokens in sizes.items():
        out = proc(images=[np.zeros((side, side, 3), dtype=np.uint8)], return_tensors="pt")
        assert int(out["image_grid_thw"].prod()) // 4 == tokens, side


def test_qwen3_vl_tiny_has_deepstack_and_interleaved_mrope() -> None:
    cfg = make_backbone("qwen3_vl").model.config
    assert list(cfg.vision_config.deepstack_visual_indexes) == [0]
    rope = cfg.text_config.rope_parameters
    assert rope["mrope_interleaved"] and sum(rope["mrope_section"]) == cfg.text_config.head_dim // 2
    assert max(rope["mrope_section"][1:]) * 3 <= cfg.text_config.head_dim // 2


def test_loads_a_qwen3_vl_folder_in_the_released_layout(tmp_path: Path, image_dir: Path) -> None:
    """The config and preprocessor files as the Qwen3-VL releases ship them (older key names) load as ours."""
    backbone = make_backbone("qwen3_vl")
    folder = backbone.save(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    rope = text.pop("rope_parameters")
    text["rope_theta"] = rope.pop("rope_theta")
    text["rope_scaling"] = rope
    vision.pop("rope_parameters")
    vision["model_type"] = "qwen3_vl"
    config.update(architectures=["Qwen3VLForConditionalGeneration"], transformers_version="4.57.0.dev0")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16,
        "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast"}))
    loaded = Backbone.load(folder, min_pixels=backbone.image_processor.size["shortest_edge"],
                           max_pixels=backbone.image_processor.size["longest_edge"])
    assert loaded.model.config.text_config.rope_parameters["mrope_interleaved"]
    proc = loaded.image_processor
    assert proc.patch_size == 16 and tuple(proc.image_mean) == tuple(proc.image_std) == (0.5, 0.5, 0.5)
    items = [Item("<|image_1|> Represent the given image.", str(image_dir / "c.png")), Item("a red dress")]
    spec = EmbeddingSpec(max_len=128)
    expected = BatchEncoder(backbone, spec).encode_items(items)
    np.testing.assert_array_equal(BatchEncoder(loaded, spec).encode_items(items), expected)
