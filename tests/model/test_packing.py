"""cocoa.model.packing: packed rows give the padded embeddings, losses and gradients."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from cocoa.core.protocol import PROTOCOLS
from cocoa.core.tokens import Role
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.model import packing
from cocoa.model.backbone import Backbone
from cocoa.model.forward import embed_padded
from cocoa.model.packing import Packing, pack_rows, token_chunks
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
from tests.helpers import (
    FAMILIES,
    embed_all,
    embedding_items,
    make_backbone,
    pairs,
    read_metrics,
    tiny_recipe,
)


@pytest.mark.parametrize("mode", ["bidirectional", "causal"])
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_packed_rows_give_the_padded_embeddings(family: str, mode: str, image_dir: Path, video_dir: Path) -> None:
    backbone = make_backbone(family)
    xs = embedding_items(image_dir, video_dir) * 2
    padded = embed_all(backbone, xs, "right", mode)
    lengths = [len(Preprocessor(backbone, 256).embedding_sequence(x)) for x in xs]
    rows = pack_rows(lengths, 2 * max(lengths))
    assert any(a > b for a, b in itertools.pairwise(rows)), "best fit moves sequences across rows"
    # one row for all, rows of a few sequences, and rows shorter than the longest sequence
    for pack_tokens in (sum(lengths), 2 * max(lengths), max(lengths) // 2):
        for side in ("right", "left"):
            torch.testing.assert_close(embed_all(backbone, xs, side, mode, pack_tokens), padded, atol=2e-5,
                                       rtol=1e-4)


def test_packing_only_when_it_saves_rows(tiny_backbone: Backbone, image_dir: Path) -> None:
    pre = Preprocessor(tiny_backbone, 256)
    seqs = [pre.embedding_sequence(x) for x in embedding_items(image_dir)]
    longest = max(len(s) for s in seqs)
    one, every = collate(seqs[:1], tiny_backbone.ids.pad), collate(seqs, tiny_backbone.ids.pad)
    assert Packing(10 * longest).rows(one) is None  # one sequence: nothing to save
    assert Packing(sum(len(s) for s in seqs)).rows(every) == [0] * len(seqs)
    assert Packing(longest // 2).rows(every) is None  # every sequence a row of its own
    assert Packing().rows(every) is None
    with torch.no_grad():  # the padded path itself, not a packed result close to it
        assert torch.equal(Packing(512).embed(tiny_backbone.model, one, PROTOCOLS["cocoa"]),
                           embed_padded(tiny_backbone.model, one))


def _computed(lengths: list[int], rows: list[int]) -> int:
    fill = [sum(n for n, r in zip(lengths, rows, strict=True) if r == row) for row in set(rows)]
    return len(fill) * max(fill)


def test_pack_rows_best_fit() -> None:
    assert pack_rows([3, 3, 3, 5, 1], 6) == [0, 0, 1, 2, 2]
    assert pack_rows([7, 2, 9, 1], 4) == [0, 1, 2, 1]  # longer than a row: a row of its own
    assert pack_rows([2, 2, 2], 100) == [0, 0, 0]
    assert pack_rows([4, 4, 4, 4], 9) == [0, 0, 1, 1] and pack_rows([], 5) == []
    # short texts fill the rows that long image sequences leave, across the batch's order
    assert pack_rows([300, 300, 20, 20], 512) == [0, 1, 0, 1]
    # as few rows as the bin packing needs, the longest as short as it can be: 3 rows of 10, not 12 + 12 + 2
    lengths = [10, 1, 1, 1, 1, 1, 1, 10]
    assert _computed(lengths, pack_rows(lengths, 12)) == 30


def test_pack_rows_respects_capacity_and_beats_in_order_filling() -> None:
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.choice([rng.randint(5, 40), rng.randint(250, 330)]) for _ in range(rng.randint(1, 40))]
        capacity = rng.choice([64, 512, 1024])
        rows = pack_rows(lengths, capacity)
        assert sorted(set(rows)) == list(range(max(rows) + 1))
        for row in set(rows):
            members = [n for n, r in zip(lengths, rows, strict=True) if r == row]
            assert sum(members) <= capacity or len(members) == 1
        in_order, used = [], capacity
        for n in lengths:
            if used + n > capacity:
                in_order.append((in_order[-1] + 1) if in_order else 0)
                used = 0
            else:
                in_order.append(in_order[-1])
            used += n
        assert _computed(lengths, rows) <= _computed(lengths, in_order)


@pytest.mark.parametrize("pack_tokens", [None, 512])
def test_token_chunks_keep_each_chunk_within_the_budget(pack_tokens: int | None) -> None:
    rng = random.Random(1)
    lengths = [rng.choice([rng.randint(5, 40), rng.randint(250, 330)]) for _ in range(64)]
    chunks = token_chunks(lengths, 2048, pack_tokens)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(64))
    computed = 0
    for chunk in chunks:
        part = [lengths[i] for i in chunk]
        if pack_tokens is None:
            assert part == sorted(part, reverse=True) and len(part) * part[0] <= 2048
            computed += len(part) * part[0]
        else:
            rows = pack_rows(part, pack_tokens)
            assert _computed(part, rows) <= 2048
            computed += _computed(part, rows)
    # like lengths together: little padding even without packing, almost none packed
    assert sum(lengths) / computed > (0.9 if pack_tokens is None else 0.97)
    assert token_chunks([900, 10, 10], 500) == [[0], [1, 2]]  # over the budget: a chunk of its own


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
        builder = ContrastiveBuilder(pre, 1, 6)
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


