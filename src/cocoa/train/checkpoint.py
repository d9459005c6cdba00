"""Atomic training checkpoints that make ``--resume`` continue exactly.

A checkpoint is a folder ``step-000123`` holding the trainable weights, optimiser,
scheduler, each rank's RNG states and the step. It is written under a temporary name and
renamed into place, so a crash never leaves a half-written checkpoint behind.

Weights and optimiser state go through ``torch.distributed.checkpoint.state_dict``: full
(unsharded) tensors keyed by parameter name, gathered to rank 0's CPU memory, so one
format serves one process, DDP and FSDP alike. On load every rank memory-maps the files
and keeps its own shard.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from cocoa.core.distributed import DistInfo, barrier

PREFIX = "step-"
#: Version of the checkpoint layout (1: index-keyed optimiser state, before FSDP).
FORMAT = 2
GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
LOAD = StateDictOptions(full_state_dict=True, strict=False)


def full_state_dict(module: nn.Module, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """Unsharded CPU weights of ``module`` on rank 0 (``{}`` elsewhere); every rank must call it."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)
    return get_model_state_dict(module, options=options)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, step: int, module: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, info: DistInfo, keep: int) -> Path:
    """Write checkpoint ``step`` under ``folder`` atomically; keep the newest ``keep``."""
    final = folder / f"{PREFIX}{step:07d}"
    tmp = folder / f".{PREFIX}{step:07d}.tmp"
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-{info.rank}.pt")
    weights = full_state_dict(module, trainable_only=True)
    optim = get_optimizer_state_dict(module, optimizer, options=GATHER)
    if info.is_main:
        torch.save(weights, tmp / "trainable.pt")
        torch.save(optim, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    del weights, optim
    barrier()
    if info.is_main:
        (tmp / "state.json").write_text(json.dumps({"step": step, "world_size": info.world_size,
                                                    "format": FORMAT}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(folder.glob(f"{PREFIX}*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint under ``folder``, if any."""
    done = [p for p in sorted(folder.glob(f"{PREFIX}*")) if (p / "state.json").is_file()]
    return done[-1] if done else None


def load(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, info: DistInfo) -> int:
    """Restore a checkpoint into the live objects (each rank its shards); returns the step to continue from."""
    state = json.loads((path / "state.json").read_text())
    if state.get("format", 1) != FORMAT:
        raise RuntimeError(f"{path} is in an older checkpoint format; restart the stage without --resume")
    if state["world_size"] != info.world_size:
        raise RuntimeError(f"{path} was written by {state['world_size']} processes; resume with the same number "
                           f"(got {info.world_size})")
    weights = torch.load(path / "trainable.pt", map_location="cpu", mmap=True)
    missing = [n for n, p in module.named_parameters() if p.requires_grad and n not in weights]
    if missing:
        raise RuntimeError(f"{path}: checkpoint lacks trainable parameters, e.g. {missing[:3]}")
    set_model_state_dict(module, weights, options=LOAD)
    optim = torch.load(path / "optimizer.pt", map_location="cpu", mmap=True, weights_only=False)
    set_optimizer_state_dict(module, optimizer, optim, options=LOAD)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / f"rng-{info.rank}.pt", weights_only=False))
    return int(state["step"])
