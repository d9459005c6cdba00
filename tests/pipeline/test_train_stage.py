"""cocoa.pipeline.train_stage: the stage chain, seeds, and LoRA stages on frozen bf16 weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cocoa.data.items import Item
from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.pipeline.train_stage import build_backbone, frozen_dtype, prepare_model, train_stage
from tests.helpers import CHAIN_STARTS, EVAL_DATASET, read_metrics, tiny_recipe

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


@pytest.mark.parametrize(("start", "family"), CHAIN_STARTS)
def test_stage_chain_loads_and_evaluates(start: str, family: str, request: pytest.FixtureRequest,
                                         mini_dir: Path, tmp_path: Path) -> None:
    prev: Path = request.getfixturevalue(start)
    BatchEncoder.from_pretrained(prev / "model", device="cpu")
    before = {n: p.clone() for n, p in BatchEncoder.from_pretrained(prev / "model", device="cpu")
              .backbone.model.named_parameters()}
    for stage in ("warmup", "bridge", "contrastive"):
        out = tmp_path / stage
        recipe = tiny_recipe(stage, mini_dir, out, f"model.path={prev / 'model'}", steps=2)
        assert recipe.model.path == str(prev / "model") and recipe.model.tiny is None
        result = train_stage(recipe)
        assert result.steps == 2
        metrics = read_metrics(out)
        assert [m["step"] for m in metrics] == [1, 2] and all(math.isfinite(m["loss"]) for m in metrics)
        if stage == "warmup":
            assert all("mae" in m and "mntp" in m for m in metrics)
        assert (out / "model" / "config.json").is_file() and (out / "result.json").is_file()
        encoder = BatchEncoder.from_pretrained(out / "model", device="cpu")
        assert encoder.spec.attention == "bidirectional" and encoder.backbone.family == family
        prev = out
    after = dict(encoder.backbone.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before), "training changed no weight"
    summary = evaluate(encoder, mini_dir, tmp_path / "eval", datasets=[EVAL_DATASET], batch_size=16,
                       show_progress=False)
    assert summary.evaluated == [EVAL_DATASET]
    assert 0.0 <= summary.datasets[EVAL_DATASET].score <= 100.0


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def test_same_seed_same_weights_other_seed_other_weights(mini_dir: Path, tmp_path: Path) -> None:
    """Within one machine a stage is deterministic: tokenizer, initialisation and batches follow the seed."""
    runs = {name: tmp_path / name for name in ("first", "again", "seed1")}
    for name, out in runs.items():
        train_stage(tiny_recipe("pretrain", mini_dir, out, f"train.seed={int(name == 'seed1')}", steps=3))
    first, again, other = (_weights(out) for out in runs.values())
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first if first[k].shape == other[k].shape)
