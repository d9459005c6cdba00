"""The contrastive stage with Matryoshka dims: its trainer step and its recipe checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cocoa.core.distributed import DistInfo
from cocoa.core.errors import ConfigError
from cocoa.core.protocol import PROTOCOLS
from cocoa.data.collate import Preprocessor
from cocoa.losses.contrastive import place_negatives
from cocoa.recipe import load_recipe
from cocoa.stages import get_stage
from cocoa.stages.contrastive import (
    ContrastiveBuilder,
    ContrastiveConfig,
    ContrastiveLoss,
    EmbeddingObjective,
    MatryoshkaConfig,
)
from cocoa.train.config import TrainConfig
from cocoa.train.steps import GradCacheStep
from cocoa.train.trainer import Trainer
from tests.helpers import TINY_HIDDEN as HIDDEN
from tests.helpers import brute_matryoshka, make_backbone, pairs, recipe_path, stage_overrides


def test_trainer_step_reports_the_brute_force_loss_with_gradcache(image_dir: Path, tmp_path: Path) -> None:
    backbone = make_backbone()
    dims, weights = [16, 48, HIDDEN], [0.25, 0.5, 1.0]
    config = ContrastiveConfig(temperature=0.05, hard_negatives=True,
                               matryoshka=MatryoshkaConfig(dims=dims, weights=weights))
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    examples = pairs(image_dir)
    batch = ContrastiveBuilder(Preprocessor(backbone, 128), hard_negatives=True, chunk=3)(
        examples, np.random.default_rng(0))
    assert len(batch.chunks) > 1
    with torch.no_grad():
        emb = torch.cat([objective(c) for c in batch.chunks]).double()
    n = batch.n_queries
    neg, mask = place_negatives(emb[2 * n:], batch.negative_of, n)
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

