"""cocoa.train.trainer: any step strategy trains; two torchrun ranks train like one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cocoa.core.distributed import DistInfo
from cocoa.train.batches import BatchPlan, StepDataset
from cocoa.train.config import TrainConfig
from cocoa.train.steps import StepContext
from cocoa.train.trainer import Trainer
from tests.helpers import read_metrics
from tests.train.dist_worker import CASES, LR, step_results


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float, atol: float = 0.0) -> None:
    """Same keys, mostly non-zero, equal within ``tol`` of each tensor's scale (or ``atol``)."""
    assert a.keys() == b.keys() and len(a) > 0
    assert sum(bool(t.abs().max() > 0) for t in b.values()) > len(b) // 2
    for name in a:
        scale = float(b[name].abs().max())
        assert torch.allclose(a[name], b[name], rtol=tol, atol=max(tol * scale, atol) + 1e-10), \
            f"{name}: max diff {float((a[name] - b[name]).abs().max()):.3g} (scale {scale:.3g})"


@pytest.fixture(scope="module")
def ranks(dist_out: Path) -> dict[str, list[dict]]:
    return {mode: [torch.load(dist_out / f"{mode}-{r}.pt") for r in range(2)] for mode in ("ddp", "fsdp")}


@pytest.fixture(scope="module")
def single(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(1)
    return step_results(image_dir, DistInfo(0, 1, 0, torch.device("cpu")), tmp_path_factory.mktemp("single"))


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_match_one_process(ranks: dict, single: dict, mode: str, name: str) -> None:
    rank0, rank1, one = ranks[mode][0][name], ranks[mode][1][name], single[name]
    # both ranks hold the same averaged (FSDP: gathered) gradients, those of one process on the global batch
    assert_same(rank0["grads"], rank1["grads"], 1e-6)
    assert_same(rank0["grads"], one["grads"], 1e-5)
    assert torch.allclose(rank0["metrics"]["grad_norm"], one["metrics"]["grad_norm"], rtol=1e-5)
    # the same AdamW step (|update| ~ lr; elements whose gradient is ~ Adam's eps differ by < 1% of it)
    assert_same(rank0["updates"], rank1["updates"], 0.0)
    # (dedupe: one process embeds the global batch's distinct rows, two ranks their own, so the sums
    # run in another order and an element with a gradient near eps moves by up to 1.3% of lr)
    assert_same(rank0["updates"], one["updates"], 1e-5, atol=(3e-2 if name == "dedupe" else 1e-2) * LR)
    assert sum(float(u.abs().max()) > 0.5 * LR for u in one["updates"].values()) > len(one["updates"]) // 2
    # every rank reports the loss of the global batch (contrastive) / its own shard (bridge: equal shapes)
    losses = torch.stack([rank0["metrics"]["loss"], rank1["metrics"]["loss"]])
    if name == "bridge":
        assert not torch.equal(losses[0], losses[1])
        losses = losses.mean(0, keepdim=True)
    assert torch.allclose(losses, one["metrics"]["loss"], rtol=1e-5)


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
