"""Worker for the ``dist_out`` fixture (tests/train/conftest.py): one training step per case under DDP
and FSDP, saved per rank.

Run as ``torchrun --nproc_per_node N tests/train/dist_worker.py OUT IMAGE_DIR MINI_DIR``; ``step_results``
is also called in-process (one rank, the global batch) for the single-process reference. Then
the worker trains a tiny bridge stage under FSDP with ``train_stage`` on the MiniMMEB folder and
resumes it from its middle checkpoint (``resume_round_trip``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cocoa.core import distributed
from cocoa.core.distributed import DistInfo
from cocoa.core.protocol import PROTOCOLS
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item, TrainPair
from cocoa.pipeline.train_stage import train_stage
from cocoa.recipe import load_recipe
from cocoa.stages.bridge import BridgeBuilder
from cocoa.stages.contrastive import (
    ContrastiveBuilder,
    ContrastiveConfig,
    ContrastiveLoss,
    EmbeddingObjective,
)
from cocoa.stages.language import LanguageObjective
from cocoa.train.batches import BatchPlan, StepDataset
from cocoa.train.config import TrainConfig
from cocoa.train.steps import GradCacheStep, LossStep
from cocoa.train.trainer import Trainer
from tests.helpers import make_backbone, pairs, recipe_path, stage_overrides

TEMPERATURE = 0.05
LR = 1e-3
CAPTION = "a photo of a red dress on a white background"
#: contrastive: the whole batch at once; gradcache: chunks of 2; text_last: chunks of 2, rank 1's last all text;
#: partial_negatives: chunks of 2, the last query has no hard negative (rank 0's all have one);
#: dedupe: chunks of 2, identical rows embedded once, so that rank 0 has 2 chunks and rank 1 has 3
CASES = ("contrastive", "gradcache", "text_last", "partial_negatives", "dedupe", "bridge")
RESUME_STEPS = 4


def bridge_pairs(image_dir: Path) -> list[TrainPair]:
    """Same-shaped pairs: every sequence has as many tokens and masked targets as the others."""
    return [TrainPair(Item("Represent the given image for classification.", str(image_dir / f"{n}.png")),
                      Item(CAPTION)) for n in "abab"]


def text_last_pairs(image_dir: Path) -> list[TrainPair]:
    """``pairs`` with a text negative for the last example: rank 1's last GradCache chunk has no image."""
    examples = pairs(image_dir)
    last = examples[-1]
    assert len(last.negatives) == 1 and last.negatives[0].image is not None
    examples[-1] = TrainPair(last.query, last.positive, (Item("a sneaker next to a bag"),))
    return examples


def partial_negative_pairs(image_dir: Path) -> list[TrainPair]:
    """``pairs`` without the last example's hard negative."""
    examples = pairs(image_dir)
    examples[-1] = TrainPair(examples[-1].query, examples[-1].positive)
    return examples


def dedupe_pairs(image_dir: Path) -> list[TrainPair]:
    """``pairs`` whose second example repeats the first's targets (rank 0's 6 rows are 4 distinct ones)."""
    examples = pairs(image_dir)
    first = examples[0]
    examples[1] = TrainPair(examples[1].query, first.positive, first.negatives)
    return examples


def trainer_for(objective: torch.nn.Module, examples: list, builder: object, info: DistInfo, out: Path,
                parallel: str, contrastive: ContrastiveConfig | None) -> Trainer:
    plan = BatchPlan(len(examples), len(examples) // info.world_size, info.world_size)
    config = TrainConfig(output_dir=str(out), max_steps=1, lr=LR, parallel=parallel)
    step = LossStep() if contrastive is None else GradCacheStep(ContrastiveLoss(contrastive))
    return Trainer(objective, StepDataset(examples, builder, plan, info.rank), step, 1, config, info, out)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every rank (FSDP shards are gathered)."""
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().clone()


def train_step(trainer: Trainer, batch: object) -> dict[str, dict[str, torch.Tensor]]:
    """Metrics, (clipped) gradients and weight updates of one optimiser step."""
    named = [(n, p) for n, p in trainer.objective.named_parameters() if p.requires_grad]
    before = {n: full(p) for n, p in named}
    metrics = trainer.train_step(batch)
    return {"metrics": {k: torch.tensor(v) for k, v in metrics.items()},
            "grads": {n: full(p.grad) for n, p in named if p.grad is not None},
            "updates": {n: full(p) - before[n] for n, p in named}}


def contrastive_case(name: str, image_dir: Path, info: DistInfo, out: Path, parallel: str) -> dict:
    examples = {"text_last": text_last_pairs, "partial_negatives": partial_negative_pairs,
                "dedupe": dedupe_pairs}.get(name, pairs)(image_dir)
    chunk = None if name == "contrastive" else 2
    backbone = make_backbone()
    config = ContrastiveConfig(temperature=TEMPERATURE, hard_negatives=True, gradcache_chunk=chunk,
                               dedupe=name == "dedupe")
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"]).train()
    builder = ContrastiveBuilder(Preprocessor(backbone, 128), 1, chunk, config.dedupe)
    trainer = trainer_for(objective, examples, builder, info, out, parallel, config)
    lo, hi = info.rank * 4 // info.world_size, (info.rank + 1) * 4 // info.world_size
    batch = builder(examples[lo:hi], np.random.default_rng(0))
    if name == "text_last":  # the last rank's last chunk is all text; rank 0's (of two) has an image
        assert (batch.chunks[-1].pixel_values is None) == (hi == 4)
    if name == "partial_negatives":  # the ranks disagree on whether their batch has hard negatives
        assert batch.negative_slots == tuple(i - lo for i in range(lo, hi) if i != 3)
    if name == "dedupe" and info.world_size == 2:  # the ranks embed different numbers of chunks
        assert len(batch.chunks) == (2 if lo == 0 else 3)
    return train_step(trainer, batch)


def bridge_case(image_dir: Path, info: DistInfo, out: Path, parallel: str) -> dict:
    backbone = make_backbone()
    objective = LanguageObjective(backbone.model, "eos_bridge").train()
    pre = Preprocessor(backbone, 128)
    builder = BridgeBuilder(pre, 0.7)
    seqs = [builder.sequence(ex, np.random.default_rng(i)) for i, ex in enumerate(bridge_pairs(image_dir))]
    assert len({len(s) for s in seqs}) == 1 and len({sum(x != -100 for x in s.labels) for s in seqs}) == 1
    trainer = trainer_for(objective, bridge_pairs(image_dir), builder, info, out, parallel, None)
    lo, hi = info.rank * 4 // info.world_size, (info.rank + 1) * 4 // info.world_size
    return train_step(trainer, collate(seqs[lo:hi], pre.ids.pad))


def step_results(image_dir: Path, info: DistInfo, out: Path, parallel: str = "ddp") -> dict[str, dict]:
    """One step of every case on this rank's shard of the global batch of 4."""
    results = {name: contrastive_case(name, image_dir, info, out, parallel) for name in CASES[:-1]}
    results["bridge"] = bridge_case(image_dir, info, out, parallel)
    return results


def resume_round_trip(mini_dir: Path, out: Path, info: DistInfo) -> None:
    """Train a tiny bridge stage under FSDP (checkpoint at step 2), keep its outputs, then resume from step 2."""
    sets = [*stage_overrides("bridge", mini_dir, out, RESUME_STEPS, batch=2), "model.path=null", "model.tiny=tiny",
            "train.parallel=fsdp", "train.save_every=2", f"train.lr={LR}", "train.schedule=linear", "data.cap=32"]
    recipe = load_recipe(recipe_path("bridge"), sets)
    train_stage(recipe)
    if info.is_main:
        shutil.copytree(out / "model", out / "model-full")
        shutil.copy(out / "metrics.jsonl", out / "metrics-full.jsonl")
    train_stage(recipe, resume=True)


def main() -> None:
    out, image_dir, mini_dir = map(Path, sys.argv[1:4])
    torch.set_num_threads(1)
    info = distributed.setup()
    for parallel in ("ddp", "fsdp"):
        torch.save(step_results(image_dir, info, out, parallel), out / f"{parallel}-{info.rank}.pt")
    resume_round_trip(mini_dir, out / "resume", info)


if __name__ == "__main__":
    main()
