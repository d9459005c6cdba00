"""One training loop for every stage, on one CPU process or many GPUs under ``torchrun``.

The trainer knows no stage: it gets an objective module, step-indexed batches and a step
strategy (:mod:`cocoa.train.steps`: back-propagate a loss, or GradCache over chunks), and
owns what is common: device and parallelism, optimiser and schedule, gradient clipping,
logging, atomic checkpoints and resume.

Across processes the objective is either replicated and wrapped in DDP
(``train.parallel: ddp``) or sharded in place with FSDP2 (``train.parallel: fsdp``); both
average gradients over ranks, so the step's maths is the same.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from cocoa.core.by_value import to_arrays, to_tensors
from cocoa.core.distributed import DistInfo
from cocoa.core.files import write_text
from cocoa.train import checkpoint, fsdp
from cocoa.train.batches import StepDataset, passthrough
from cocoa.train.config import TrainConfig
from cocoa.train.steps import Step, StepContext


@dataclass
class FitResult:
    steps: int
    resumed_from: int
    wall_seconds: float
    samples_per_second: float
    last: dict[str, float]


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where asked for, or where ``auto`` and the GPU supports it."""
    if config.precision == "bf16":
        return torch.bfloat16
    if config.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _step_of(line: str) -> float:
    """The step of a metrics line; a torn line (a crash mid-write) counts as never written."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


class MetricsLog:
    """``metrics.jsonl`` (and TensorBoard when installed), written by the main process."""

    def __init__(self, folder: Path, enabled: bool, resume_step: int) -> None:
        self.path = folder / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
            write_text(self.path, "".join(line + "\n" for line in kept))
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(folder / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Trainer:
    """Trains ``objective`` with ``step`` on the step-indexed ``dataset`` for ``total_steps`` steps."""

    def __init__(self, objective: nn.Module, dataset: StepDataset, step: Step, total_steps: int,
                 config: TrainConfig, info: DistInfo, output_dir: Path, *, num_workers: int = 0) -> None:
        self.objective, self.dataset, self.step, self.total_steps = objective, dataset, step, total_steps
        self.config, self.info, self.output_dir, self.num_workers = config, info, output_dir, num_workers
        self.amp = autocast_dtype(config, info.device)
        self.sharded = config.parallel == "fsdp"
        self.engine = self.distribute(objective)
        self.context = StepContext(engine=self.engine, module=objective, device=info.device,
                                   autocast=self.autocast, accumulate=self.accumulate)
        self.params = [p for p in objective.parameters() if p.requires_grad]
        if not self.params:
            raise RuntimeError("nothing to train: no parameter requires grad")
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
        self.scheduler = get_scheduler(config.schedule if config.schedule != "constant" else "constant_with_warmup",
                                       self.optimizer, num_warmup_steps=config.warmup_steps,
                                       num_training_steps=total_steps)

    def distribute(self, objective: nn.Module) -> nn.Module:
        """Shard the objective in place (FSDP) or move it to the device (and wrap it in DDP); returns what to call."""
        if self.sharded:
            fsdp.shard(objective, self.info.device, self.amp)
            return objective
        objective.to(self.info.device)
        if not self.info.enabled:
            return objective
        return DistributedDataParallel(objective, device_ids=[self.info.local_rank]
                                       if self.info.device.type == "cuda" else None)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.info.device.type, dtype=self.amp)

    def batches(self, start: int) -> Iterator[Any]:
        loader = DataLoader(self.dataset, batch_size=None, sampler=range(start, self.total_steps),
                            num_workers=self.num_workers, collate_fn=to_arrays if self.num_workers else passthrough,
                            persistent_workers=False, prefetch_factor=4 if self.num_workers else None)
        if not self.num_workers:
            return iter(loader)
        return (to_tensors(batch) for batch in loader)  # workers send batches by value: cocoa.core.by_value

    def accumulate(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces the last chunk's backward only; FSDP reduce-scatters every chunk to keep grads sharded."""
        if last or self.sharded or not self.info.enabled:
            return contextlib.nullcontext()
        return self.engine.no_sync()  # type: ignore[operator]

    def compute(self, batch: Any) -> dict[str, float]:
        """Forward and backward of this rank's batch by the stage's step (no optimiser step)."""
        return self.step(self.context, batch)

    def train_step(self, batch: Any) -> dict[str, float]:
        """One optimiser step on this rank's batch; returns its metrics (the gradients stay for inspection)."""
        self.optimizer.zero_grad(set_to_none=True)
        out = self.compute(batch)
        if not all(math.isfinite(v) for v in out.values()):
            raise FloatingPointError(f"non-finite loss at step {self.scheduler.last_epoch + 1}: {out}; "
                                     "lower train.lr or check data")
        if self.config.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
            out["grad_norm"] = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
        self.optimizer.step()
        self.scheduler.step()
        return out

    def fit(self, resume: bool = False) -> FitResult:
        """Run to ``total_steps``, checkpointing atomically; with ``resume`` continue the latest checkpoint."""
        ckpt_dir = self.output_dir / "checkpoints"
        start = 0
        if resume and (found := checkpoint.latest(ckpt_dir)) is not None:
            start = checkpoint.load(found, self.objective, self.optimizer, self.scheduler, self.info)
        log = MetricsLog(self.output_dir, self.info.is_main, start)
        self.objective.train()
        bar = tqdm(total=self.total_steps, initial=start, disable=not self.info.is_main, desc="train",
                   unit="step", dynamic_ncols=True)
        began, samples, last = time.perf_counter(), 0, {}
        per_step = self.dataset.plan.global_batch
        for step, batch in enumerate(self.batches(start), start=start):
            last = self.train_step(batch)
            samples += per_step
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if done % self.config.log_every == 0 or done == self.total_steps:
                elapsed = time.perf_counter() - began
                log.write({"step": done, **last, "lr": self.scheduler.get_last_lr()[0],
                           "samples_per_second": samples / max(elapsed, 1e-9)})
            if done % self.config.save_every == 0 and done < self.total_steps:
                checkpoint.save(ckpt_dir, done, self.objective, self.optimizer, self.scheduler, self.info,
                                self.config.keep_checkpoints)
        bar.close()
        log.close()
        wall = time.perf_counter() - began
        return FitResult(steps=self.total_steps, resumed_from=start, wall_seconds=wall,
                         samples_per_second=samples / max(wall, 1e-9), last=last)
