"""The stage table: recipes name registered stages, shipped recipes chain like ``cocoa run``, the trainer is stage-free."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cocoa.core.distributed import DistInfo
from cocoa.core.errors import ConfigError
from cocoa.pipeline.driver import load_pipeline, stage_folder
from cocoa.recipe import load_recipe, parse_recipe
from cocoa.stages import STAGES, get_stage
from cocoa.train.batches import BatchPlan, StepDataset
from cocoa.train.config import TrainConfig
from cocoa.train.steps import StepContext
from cocoa.train.trainer import Trainer
from tests.helpers import read_metrics


def test_every_stage_is_registered_under_its_recipe_name() -> None:
    assert list(STAGES) == ["pretrain", "warmup", "bridge", "contrastive"]
    assert all(get_stage(name).name == name for name in STAGES)
    with pytest.raises(ConfigError, match="unknown stage 'finetune'; known: pretrain, warmup, bridge, contrastive"):
        get_stage("finetune")


def test_a_recipe_naming_an_unknown_stage_is_refused_naming_the_field() -> None:
    raw = {"stage": "finetune", "model": {"tiny": "tiny"}, "data": {"root": "d"},
           "train": {"output_dir": "o", "max_steps": 1}}
    with pytest.raises(ConfigError) as info:
        parse_recipe(raw)
    assert "  stage: Value error, unknown stage 'finetune'" in str(info.value)


@pytest.mark.parametrize("pipeline", ["mini", "paper-qwen2-vl-2b"])
def test_shipped_recipes_chain_through_the_folders_cocoa_run_writes(pipeline: str) -> None:
    spec, base = load_pipeline(f"builtin:pipelines/{pipeline}")
    recipes = [load_recipe(entry.recipe if entry.recipe.startswith("builtin:") else base / entry.recipe)
               for entry in spec.stages]
    out = Path(recipes[0].train.output_dir).parent
    numbers = [get_stage(recipe.stage).number for recipe in recipes]
    assert numbers == sorted(numbers) and numbers[-1] == 3  # folders are numbered by stage: 3-contrastive
    for index, recipe in enumerate(recipes):
        assert Path(recipe.train.output_dir) == stage_folder(out, numbers[index], recipe.stage)
        if index:
            assert Path(recipe.model.path) == stage_folder(out, numbers[index - 1], recipes[index - 1].stage) / "model"


class CountingStep:
    """A step from outside the shipped stages: squared output of a linear layer."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, ctx: StepContext, batch: torch.Tensor) -> dict[str, float]:
        self.calls += 1
        with ctx.autocast():
            loss = ctx.engine(batch.to(ctx.device)).pow(2).mean()
        loss.backward()
        return {"loss": float(loss.detach())}


def test_the_trainer_runs_any_step_strategy(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data = torch.randn(8, 4)
    plan = BatchPlan(len(data), 4)
    step = CountingStep()
    before = model.weight.detach().clone()
    trainer = Trainer(model, StepDataset(data, lambda rows, rng: torch.stack(list(rows)), plan), step, 3,
                      TrainConfig(output_dir=str(tmp_path), max_steps=3, lr=1e-2, warmup_steps=0),
                      DistInfo(0, 1, 0, torch.device("cpu")), tmp_path)
    result = trainer.fit()
    assert step.calls == 3 and result.steps == 3
    assert not torch.equal(model.weight, before)
    assert [record["step"] for record in read_metrics(tmp_path)] == [3]
