"""Worker for tests/test_distributed.py: one training step per objective, gradients saved per rank.

Run as ``torchrun --nproc_per_node N tests/dist_worker.py OUT IMAGE_DIR``; ``step_grads`` is also
called in-process (one rank, the global batch) for the single-process reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item, TrainPair
from cocoa.data.stages import BatchPlan, BridgeBuilder, ContrastiveBuilder, StepDataset
from cocoa.recipes import BridgeConfig, ContrastiveConfig, TrainConfig
from cocoa.train import distributed
from cocoa.train.distributed import DistInfo
from cocoa.train.objectives import BridgeObjective, EmbeddingObjective
from cocoa.train.trainer import Trainer
from tests.conftest import make_backbone
from tests.train_fixtures import pairs

TEMPERATURE = 0.05
CAPTION = "a photo of a red dress on a white background"


def bridge_pairs(image_dir: Path) -> list[TrainPair]:
    """Same-shaped pairs: every sequence has as many tokens and masked targets as the others."""
    return [TrainPair(Item("Represent the given image for classification.", str(image_dir / f"{n}.png")),
                      Item(CAPTION)) for n in "abab"]


def trainer_for(objective: torch.nn.Module, examples: list, builder: object, info: DistInfo, out: Path,
                contrastive: ContrastiveConfig | None) -> Trainer:
    plan = BatchPlan(len(examples), len(examples) // info.world_size, info.world_size)
    return Trainer(objective, StepDataset(examples, builder, plan, info.rank), 1,
                   TrainConfig(output_dir=str(out), max_steps=1), info, out, contrastive=contrastive)


def take_grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return out


def step_grads(image_dir: Path, info: DistInfo, out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Gradients of one contrastive step (full and GradCache-chunked) and one bridge step on this rank's shard."""
    results: dict[str, dict[str, torch.Tensor]] = {}
    lo, hi = info.rank * 4 // info.world_size, (info.rank + 1) * 4 // info.world_size

    backbone = make_backbone()
    config = ContrastiveConfig(temperature=TEMPERATURE, hard_negatives=True)
    objective = EmbeddingObjective(backbone.model, config).train()
    pre = Preprocessor(backbone, 128)
    examples = pairs(image_dir)
    shard = examples[lo:hi]
    trainer = trainer_for(objective, examples, ContrastiveBuilder(pre, True, None), info, out, config)
    for name, chunk in (("contrastive", None), ("gradcache", 2)):
        batch = ContrastiveBuilder(pre, True, chunk)(shard, np.random.default_rng(0))
        results[f"{name}_loss"] = {"loss": torch.tensor(trainer.contrastive_step(batch)["loss"])}
        results[name] = take_grads(objective)
    del trainer, objective

    backbone = make_backbone()
    objective = BridgeObjective(backbone.model, BridgeConfig()).train()
    pre = Preprocessor(backbone, 128)
    builder = BridgeBuilder(pre, 0.7)
    seqs = [builder.sequence(ex, np.random.default_rng(i)) for i, ex in enumerate(bridge_pairs(image_dir))]
    assert len({len(s) for s in seqs}) == 1 and len({sum(x != -100 for x in s.labels) for s in seqs}) == 1
    trainer = trainer_for(objective, bridge_pairs(image_dir), builder, info, out, None)
    batch = collate(seqs[lo:hi], pre.ids.pad)
    results["bridge_loss"] = {"loss": torch.tensor(trainer.loss_step(batch)["loss"])}
    results["bridge"] = take_grads(objective)
    return results


def main() -> None:
    out, image_dir = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    info = distributed.setup()
    results = step_grads(image_dir, info, out)
    torch.save(results, out / f"grads-{info.rank}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main()
