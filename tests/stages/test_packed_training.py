"""Packed rows in training: every stage's loss and gradients equal the padded batch's, on all three
families, with image, video and text sequences of different lengths in one batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from cocoa.core.protocol import PROTOCOLS
from cocoa.core.tokens import Role
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item
from cocoa.model import packing
from cocoa.model.backbone import Backbone
from cocoa.model.packing import Packing
from cocoa.pipeline.train_stage import train_stage
from cocoa.stages.bridge import BridgeBuilder
from cocoa.stages.contrastive import (
    ContrastiveBuilder,
    ContrastiveConfig,
    ContrastiveLoss,
    EmbeddingObjective,
)
from cocoa.stages.language import LanguageObjective
from cocoa.stages.pretrain import PretrainBuilder
from cocoa.stages.warmup import WarmupBuilder, WarmupConfig, WarmupObjective
from tests.helpers import make_backbone, pairs, read_metrics, tiny_recipe

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
STAGES = ["pretrain", "warmup", "bridge", "contrastive"]


def captions(image_dir: Path, video_dir: Path) -> list[CaptionPair]:
    return [CaptionPair(Item("", str(image_dir / "c.png")), "a large photo of noise " * 3),
            CaptionPair(Item("", str(image_dir / "a.png")), "small"),
            CaptionPair(Item("", video=str(video_dir / "clip")), "a short clip"),
            CaptionPair(Item("", str(image_dir / "d.png")), "a medium photo with a longer caption than most")]


def stage_loss(stage: str, backbone: Backbone, image_dir: Path, video_dir: Path,
               pack_tokens: int | None) -> tuple[Callable[[], Tensor], int]:
    """A closure computing the stage's loss on one fixed batch, and the batch's longest sequence."""
    model, pre, rng = backbone.model, Preprocessor(backbone, 256), np.random.default_rng(0)
    if stage == "contrastive":
        builder = ContrastiveBuilder(pre, True, 6)
        batch = builder(pairs(image_dir), rng)
        objective = EmbeddingObjective(model, PROTOCOLS["cocoa"], Packing(pack_tokens))
        loss = ContrastiveLoss(ContrastiveConfig(temperature=0.05, hard_negatives=True))
        longest = max(int((c.roles != Role.PAD).sum(1).max()) for c in batch.chunks)
        return lambda: loss(torch.cat([objective(chunk) for chunk in batch.chunks]), batch)[0], longest
    if stage == "bridge":
        batch = BridgeBuilder(pre, 0.5)(pairs(image_dir), rng)
        objective = LanguageObjective(model, "eos_bridge", packing=Packing(pack_tokens))
    elif stage == "pretrain":
        batch = PretrainBuilder(pre)(captions(image_dir, video_dir), rng)
        objective = LanguageObjective(model, "causal", packing=Packing(pack_tokens))
    else:
        proc = backbone.image_processor
        batch = WarmupBuilder(pre, 0.3, 0.5)(captions(image_dir, video_dir), rng)
        objective = WarmupObjective(model, WarmupConfig(), 3 * proc.temporal_patch_size * proc.patch_size ** 2,
                                    backbone.merge_size, Packing(pack_tokens))
    return lambda: objective(batch)["loss"], int((batch.roles != Role.PAD).sum(1).max())


def loss_and_grads(stage: str, family: str, image_dir: Path, video_dir: Path,
                   pack_tokens: int | None) -> tuple[Tensor, dict[str, Tensor], int]:
    torch.manual_seed(0)  # the same weights (and MAE head) for the padded and the packed run
    backbone = make_backbone(family)
    backbone.model.train()
    compute, longest = stage_loss(stage, backbone, image_dir, video_dir, pack_tokens)
    loss = compute()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in backbone.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, longest


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stage", STAGES)
def test_packed_loss_and_gradients_equal_the_padded_ones(stage: str, family: str, image_dir: Path,
                                                         video_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loss, grads, longest = loss_and_grads(stage, family, image_dir, video_dir, None)
    packed_rows: list[tuple[int, int]] = []
    run = packing._packed_states

    def counted(*args: object, **kwargs: object) -> tuple[Tensor, packing.Layout]:
        states, layout = run(*args, **kwargs)
        packed_rows.append((len(layout.rows), layout.shape[0]))
        return states, layout

    monkeypatch.setattr(packing, "_packed_states", counted)
    packed_loss, packed_grads, _ = loss_and_grads(stage, family, image_dir, video_dir, 2 * longest)
    assert packed_rows and all(rows < sequences for sequences, rows in packed_rows)  # fewer rows than sequences
    torch.testing.assert_close(packed_loss, loss, rtol=1e-5, atol=1e-6)
    assert packed_grads.keys() == grads.keys() and len(grads) > 10
    assert any("visual" in name for name in grads)  # the vision tower trains through the packed rows too
    for name, grad in grads.items():
        scale = float(grad.abs().max())
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-4 * scale + 1e-9, msg=name)


def test_the_batches_really_pack(tiny_backbone: Backbone, image_dir: Path, video_dir: Path) -> None:
    pre, rng = Preprocessor(tiny_backbone, 256), np.random.default_rng(0)
    batch = PretrainBuilder(pre)(captions(image_dir, video_dir), rng)
    longest = int((batch.roles != Role.PAD).sum(1).max())
    assert Packing(2 * longest).rows(batch) is not None and Packing().rows(batch) is None


@pytest.mark.parametrize("stage", ["warmup", "contrastive"])
def test_the_recipe_switch_trains_packed_with_the_padded_losses(stage: str, mini_dir: Path, tmp_path: Path) -> None:
    logged = {}
    for pack in ("null", "512"):
        recipe = tiny_recipe(stage, mini_dir, tmp_path / pack, "model.path=null", "model.tiny=tiny",
                             f"train.pack_tokens={pack}", "train.lr=1e-9", steps=2)
        train_stage(recipe)
        logged[pack] = [m["loss"] for m in read_metrics(tmp_path / pack) if "loss" in m]
    assert len(logged["512"]) == 2
    np.testing.assert_allclose(logged["512"], logged["null"], rtol=1e-4)
