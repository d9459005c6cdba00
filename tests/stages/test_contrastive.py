"""cocoa.stages.contrastive: chunked and deduplicated batches, the Matryoshka loss, video pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cocoa.core.distributed import DistInfo
from cocoa.core.errors import ConfigError
from cocoa.core.protocol import PROTOCOLS
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item, TrainPair
from cocoa.data.train_pairs import read_train_pairs
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.losses.contrastive import place_negatives
from cocoa.pipeline.train_stage import train_stage
from cocoa.recipe import load_recipe
from cocoa.stages import get_stage
from cocoa.stages.contrastive import (
    ContrastiveBuilder,
    ContrastiveConfig,
    ContrastiveLoss,
    EmbeddingObjective,
    MatryoshkaConfig,
    distinct_rows,
    training_record,
)
from cocoa.train.community_batches import NEGATIVES_DIR, CommunityPlan
from cocoa.train.config import TrainConfig
from cocoa.train.steps import GradCacheStep
from cocoa.train.trainer import Trainer
from tests.helpers import TINY_HIDDEN as HIDDEN
from tests.helpers import VIDEO_PAIR_ROWS as ROWS
from tests.helpers import (
    assert_same_step,
    brute_matryoshka,
    contrastive_trainer,
    make_backbone,
    pairs,
    read_metrics,
    recipe_path,
    stage_overrides,
    tiny_recipe,
)
from tests.helpers import write_video_pairs as write_pairs


def test_trainer_step_reports_the_brute_force_loss_with_gradcache(image_dir: Path, tmp_path: Path) -> None:
    backbone = make_backbone()
    dims, weights = [16, 48, HIDDEN], [0.25, 0.5, 1.0]
    config = ContrastiveConfig(temperature=0.05, hard_negatives=True,
                               matryoshka=MatryoshkaConfig(dims=dims, weights=weights))
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    examples = pairs(image_dir)
    batch = ContrastiveBuilder(Preprocessor(backbone, 128), negatives=1, chunk=3)(
        examples, np.random.default_rng(0))
    assert len(batch.chunks) > 1
    with torch.no_grad():
        emb = torch.cat([objective(c) for c in batch.chunks]).double()
    n = batch.n_queries
    neg, mask = place_negatives(emb[2 * n:], batch.negative_slots, n)
    want = brute_matryoshka(emb[:n].numpy(), emb[n:2 * n].numpy(), 0.05, dims, weights, neg.numpy(), mask.numpy())
    trainer = Trainer(objective, None, GradCacheStep(ContrastiveLoss(config)), 1,  # type: ignore[arg-type]
                      TrainConfig(output_dir=str(tmp_path), max_steps=1), DistInfo(0, 1, 0, torch.device("cpu")),
                      tmp_path)
    assert trainer.compute(batch)["loss"] == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize(("sets", "message"), [
    (["contrastive.matryoshka.dims=[64, 32]"], "strictly ascending"),
    (["contrastive.matryoshka.dims=[32, 32]"], "strictly ascending"),
    (["contrastive.matryoshka.dims=[0, 32]"], "positive integers"),
    (["contrastive.matryoshka.dims=[]"], "at least one width"),
    (["contrastive.matryoshka.dims=[16, 32]", "contrastive.matryoshka.weights=[1.0]"], "one weight per width"),
    (["contrastive.matryoshka.dims=[16, 32]", "contrastive.matryoshka.weights=[1.0, 0]"], "positive"),
    (["contrastive.matryoshka.weights=[1.0]"], "dims"),
])
def test_recipe_widths_are_validated_naming_the_field(tmp_path: Path, sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe_path("contrastive"), [*stage_overrides("contrastive", tmp_path, tmp_path), *sets])
    assert "  contrastive.matryoshka" in str(info.value) and message in str(info.value)


def test_widths_above_the_hidden_size_are_refused_before_training(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_path("contrastive"), [*stage_overrides("contrastive", tmp_path, tmp_path),
                                                      f"contrastive.matryoshka.dims=[32, {HIDDEN + 1}]"])
    backbone = make_backbone()
    with pytest.raises(ConfigError, match=f"contrastive.matryoshka.dims: width {HIDDEN + 1} is larger than the "
                                          f"model's hidden size {HIDDEN}"):
        get_stage("contrastive").parts(recipe, backbone, backbone.model)


def test_each_query_brings_up_to_k_hard_negatives_and_all_are_candidates(image_dir: Path) -> None:
    backbone, base = make_backbone(), pairs(image_dir)
    examples = [TrainPair(base[0].query, base[0].positive, tuple(p.positive for p in base[1:])),  # 3: the first 2
                TrainPair(base[1].query, base[1].positive, (base[0].positive,)),
                TrainPair(base[2].query, base[2].positive)]
    batch = ContrastiveBuilder(Preprocessor(backbone, 128), negatives=2, chunk=4)(examples, np.random.default_rng(0))
    assert (batch.negative_slots, batch.per_query, sum(len(c.input_ids) for c in batch.chunks)) == ((0, 1, 2), 2, 9)
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    with torch.no_grad():
        emb = torch.cat([objective(c) for c in batch.chunks]).double()
    candidates = torch.cat([emb[3:6], emb[6:9]])  # the positives, then every hard negative
    want = torch.nn.functional.cross_entropy(emb[:3] @ candidates.T / 0.05, torch.arange(3))
    config = ContrastiveConfig(temperature=0.05, hard_negatives=True, negatives_per_query=2)
    assert ContrastiveLoss(config)(emb, batch)[1].item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError, match="negatives_per_query counts hard negatives"):
        ContrastiveConfig(negatives_per_query=2)


def test_mask_same_targets_leaves_the_same_answer_under_another_row_out(image_dir: Path) -> None:
    backbone, base = make_backbone(), pairs(image_dir)
    examples = [base[0], base[1], TrainPair(base[2].query, base[0].positive, (base[1].positive,))]
    pre = Preprocessor(backbone, 128)
    batch = ContrastiveBuilder(pre, 1, None, content_ids=True)(examples, np.random.default_rng(0))
    assert batch.target_ids[0] == batch.target_ids[2] != batch.target_ids[1]
    assert batch.negative_ids[2] == batch.target_ids[1] and batch.negative_ids[0] != batch.target_ids[0]
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    with torch.no_grad():
        emb = torch.cat([objective(c) for c in batch.chunks]).double()
    logits = emb[:3] @ torch.cat([emb[3:6], emb[6:9]]).T / 0.05
    logits[0, 2] = logits[2, 0] = logits[1, 3 + 2] = float("-inf")  # the answer under another row, or as a negative
    want = torch.nn.functional.cross_entropy(logits, torch.arange(3)).item()
    masked = ContrastiveConfig(temperature=0.05, hard_negatives=True, mask_same_targets=True)
    assert ContrastiveLoss(masked)(emb, batch)[1].item() == pytest.approx(want, rel=1e-6)
    plain = ContrastiveBuilder(pre, 1, None)(examples, np.random.default_rng(0))
    assert plain.target_ids is None
    assert ContrastiveLoss(masked)(emb, plain)[1].item() > want  # without ids nothing is left out


def test_the_training_record_names_the_plan_and_where_the_negatives_came_from(tmp_path: Path) -> None:
    base = stage_overrides("contrastive", tmp_path, tmp_path)
    plain = load_recipe(recipe_path("contrastive"), [*base, "contrastive.hard_negatives=false"])
    assert training_record(plain, 0) == {"stage": "contrastive", "batches": None, "hard_negatives": None}
    plan = tmp_path / "plan"
    CommunityPlan(((0, 1), (2, 3)), 4, {"teacher": "abc", "p": 1, "m": 2, "negatives": 2, "done": True,
                                        "seconds": 3.0}).save(plan)
    (plan / NEGATIVES_DIR).mkdir()
    mined = load_recipe(recipe_path("contrastive"), [*base, f"data.batches={plan}",
                                                     f"data.root={plan / NEGATIVES_DIR}"])
    assert training_record(mined, 2) == {
        "stage": "contrastive", "hard_negatives": {"data": str(plan / NEGATIVES_DIR), "per_query": 2, "plan": str(plan)},
        "batches": {"plan": str(plan), "teacher": "abc", "p": 1, "m": 2, "negatives": 2, "seconds": 3.0}}
    with pytest.raises(ConfigError, match=f"negatives_per_query is 3 but {plan} mined 2 a query"):
        training_record(mined, 3)
    own = load_recipe(recipe_path("contrastive"), base)
    assert training_record(own, 1)["hard_negatives"] == {"data": own.data.root, "per_query": 1, "plan": None}
    assert get_stage("contrastive").embedding_spec(mined).training == training_record(mined, 1)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_contrastive_stage_trains_on_video_pairs(family: str, video_dir: Path, tmp_path: Path) -> None:
    start = make_backbone(family).save(tmp_path / "start")
    root = write_pairs(tmp_path / "data", ROWS)
    out = tmp_path / "run"
    recipe = tiny_recipe("contrastive", root, out, f"model.path={start}", f"data.images={video_dir}",
                         "data.max_len=512", "protocol.video.frames=4", steps=3)
    result = train_stage(recipe)
    assert result.steps == 3 and all(m["loss"] > 0 for m in read_metrics(out) if "loss" in m)
    trained = BatchEncoder.from_pretrained(out / "model", device="cpu")
    before = BatchEncoder.from_pretrained(start, device="cpu").backbone.model.model.visual.patch_embed.proj.weight
    after = trained.backbone.model.model.visual.patch_embed.proj.weight
    assert (after - before).abs().max() > 0, "no row has an image: only the videos can move the vision tower"
    assert trained.protocol.video.frames == 4  # the checkpoint records how it sampled videos
    query = read_train_pairs(root, None, video_dir)[0].query
    assert trained.encode_items([query]).shape == (1, trained.backbone.hidden_size)


def test_gradcache_rows_and_tokens_are_one_choice() -> None:
    with pytest.raises(ValueError, match=r"at most one of contrastive\.gradcache_chunk"):
        ContrastiveConfig(gradcache_chunk=8, gradcache_tokens=4096)


def test_dedupe_embeds_each_distinct_row_once_with_the_same_loss_and_gradients(image_dir: Path,
                                                                             tmp_path: Path) -> None:
    backbone = make_backbone()
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    objective.train()
    pre = Preprocessor(backbone, 128)
    base = pairs(image_dir)
    # two more label-style rows: a positive and a negative that repeat earlier targets
    examples = [*base, TrainPair(Item("a photo of an ankle boot"), base[0].positive, (base[1].positive,))]
    plain = ContrastiveBuilder(pre, negatives=1, chunk=3)(examples, np.random.default_rng(0))
    deduped = ContrastiveBuilder(pre, negatives=1, chunk=3, dedupe=True)(examples, np.random.default_rng(0))
    embedded = sum(len(c) for c in deduped.chunks)
    assert sum(len(c) for c in plain.chunks) == 15 and embedded == 12
    assert deduped.rows is not None and len(deduped.rows) == 15 and max(deduped.rows) == embedded - 1
    assert deduped.rows[5] == deduped.rows[9] and deduped.rows[7] == deduped.rows[10] and \
        deduped.rows[6] == deduped.rows[14], "repeated targets are one row each"
    trainer = contrastive_trainer(objective, examples, ContrastiveBuilder(pre, 1, 3), tmp_path)
    assert_same_step(trainer, objective, plain, deduped)


def test_distinct_rows_keys_on_text_and_image_path(image_dir: Path) -> None:
    path = str(image_dir / "a.png")
    pil = Image.new("RGB", (8, 8))
    items = [Item("x", path), Item("x"), Item("x", path), Item("", path), Item("x"), Item("x", pil), Item("x", pil)]
    distinct, rows = distinct_rows(items)
    assert distinct == [Item("x", path), Item("x"), Item("", path), Item("x", pil), Item("x", pil)]
    assert rows == (0, 1, 0, 2, 1, 3, 4)
