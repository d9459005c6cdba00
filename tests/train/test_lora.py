"""cocoa.train.lora: adapter targets per family, and LoRA stages merged into plain checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.pipeline.train_stage import train_stage
from cocoa.train.config import LoraConfig
from cocoa.train.lora import add_lora
from tests.helpers import CHAIN_STARTS, make_backbone, tiny_recipe


@pytest.mark.parametrize(("start", "family"), CHAIN_STARTS)
def test_lora_stage_with_checkpointing_merges_into_a_plain_checkpoint(start: str, family: str,
                                                                    request: pytest.FixtureRequest,
                                                                    mini_dir: Path, tmp_path: Path) -> None:
    pretrained: Path = request.getfixturevalue(start)
    out = tmp_path / "bridge-lora"
    recipe = tiny_recipe("bridge", mini_dir, out, f"model.path={pretrained / 'model'}", "train.lr=1e-2",
                         "train.gradient_checkpointing=true",
                         "train.lora={r: 4, alpha: 8, dropout: 0.1, dora: true, vision: true}", steps=2)
    train_stage(recipe)
    config = (out / "model" / "config.json").read_text()
    weights = list((out / "model").glob("*.safetensors"))
    assert weights and not list((out / "model").glob("adapter_*")), "LoRA must be merged, not saved apart"
    assert "lora" not in config
    merged = dict(BatchEncoder.from_pretrained(out / "model", device="cpu").backbone.model.named_parameters())
    base = dict(BatchEncoder.from_pretrained(pretrained / "model", device="cpu").backbone.model.named_parameters())
    assert merged.keys() == base.keys(), "the merged model has exactly the upstream parameter names"
    changed = {n for n in base if not torch.equal(base[n], merged[n])}
    assert any("language_model" in n and "q_proj" in n for n in changed)
    assert any("visual" in n for n in changed), "vision-tower adapters were trained and merged"
    vision_mlp = "mlp.linear_fc1" if family == "qwen3_vl" else "mlp.fc1"
    assert any("visual.blocks" in n and vision_mlp in n for n in changed), "the vision MLP has adapters too"
    assert not any("lm_head" in n for n in changed), "frozen weights stayed frozen"
    assert not any("visual.blocks" in n and "attn.proj" in n for n in changed), "proj is opt-in"
    embed = next(n for n in base if n.endswith("embed_tokens.weight"))
    mask_id = BatchEncoder.from_pretrained(pretrained / "model", device="cpu").backbone.ids.mask
    rows = (base[embed] != merged[embed]).any(1).nonzero().flatten().tolist()
    assert rows == [mask_id], "of the embedding matrix only the mask token's row trains"


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_lora_targets_are_the_release_list_with_vision_proj_opt_in(family: str) -> None:
    def adapted(config: LoraConfig) -> set[str]:
        model = add_lora(make_backbone(family).model, config)
        return {name.split(".lora_A")[0] for name, _ in model.named_parameters() if ".lora_A." in name}

    default = adapted(LoraConfig())
    vision = {name.rsplit(".", 1)[-1] for name in default if "visual" in name}
    language = {name.rsplit(".", 1)[-1] for name in default if "language_model" in name}
    assert language == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    expected = {"qwen2_vl": {"qkv", "fc1", "fc2"}, "qwen2_5_vl": {"qkv", "gate_proj", "up_proj", "down_proj"},
                "qwen3_vl": {"qkv", "linear_fc1", "linear_fc2"}}[family]
    assert vision == expected
    with_proj = adapted(LoraConfig(vision_targets=[*LoraConfig().vision_targets, "proj"]))
    assert {name for name in with_proj - default} == {n for n in with_proj if n.endswith("attn.proj")} != set()
    assert not any("visual" in name for name in adapted(LoraConfig(vision=False)))
    backbone = make_backbone(family)
    mask = backbone.ids.mask
    with_token = add_lora(backbone.model, LoraConfig(), [mask])
    trainable = [n for n, p in with_token.named_parameters() if p.requires_grad and "embed_tokens" in n]
    assert trainable and all("token_adapter" in n for n in trainable)
    assert not any(p.requires_grad for n, p in add_lora(make_backbone(family).model, LoraConfig()).named_parameters()
                   if "embed_tokens" in n)
