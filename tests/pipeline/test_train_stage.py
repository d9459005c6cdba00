"""Adapters on frozen weights: the base weights load in the autocast dtype (bf16), what trains is float32."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cocoa.data.items import Item
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.pipeline.train_stage import build_backbone, frozen_dtype, prepare_model, train_stage
from tests.helpers import read_metrics, tiny_recipe

LORA = "train.lora={r: 4, alpha: 8, dropout: 0.0, dora: true, vision: true}"


def test_frozen_weights_are_bf16_and_trained_ones_float32(mini_dir: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe("warmup", mini_dir, tmp_path, "model.path=null", "model.tiny=tiny", LORA,
                         "train.precision=bf16")
    cpu = torch.device("cpu")
    assert frozen_dtype(recipe, cpu) == torch.bfloat16
    model = prepare_model(recipe, build_backbone(recipe, torch.bfloat16), masks_tokens=True)
    trained = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.dtype for n, p in model.named_parameters() if not p.requires_grad}
    assert set(trained.values()) == {torch.float32} and set(frozen.values()) == {torch.bfloat16}
    assert any("lora_A" in n for n in trained) and any("magnitude" in n for n in trained)
    assert any("token_adapter" in n or "trainable_tokens" in n for n in trained)  # the mask-token row
    # full fine-tuning, or no bf16 autocast, keeps float32 weights
    assert frozen_dtype(tiny_recipe("warmup", mini_dir, tmp_path, "train.precision=bf16"), cpu) == torch.float32
    assert frozen_dtype(tiny_recipe("warmup", mini_dir, tmp_path, LORA, "train.precision=fp32"), cpu) == torch.float32


def test_a_lora_stage_trains_on_bf16_weights_and_saves_a_loadable_model(mini_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "warmup"
    train_stage(tiny_recipe("warmup", mini_dir, out, "model.path=null", "model.tiny=tiny", LORA,
                            "train.precision=bf16", "train.lr=1e-3", steps=2))
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert losses and all(math.isfinite(x) for x in losses)
    encoder = BatchEncoder.from_pretrained(out / "model", device="cpu")
    assert next(encoder.backbone.model.parameters()).dtype == torch.float32  # loaded for fp32 compute on CPU
    assert torch.isfinite(torch.from_numpy(encoder.encode_items([Item("a red dress")]))).all()
