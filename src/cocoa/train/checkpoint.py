"""Atomic training checkpoints that make ``--resume`` continue exactly.

A checkpoint is a folder ``step-000123`` holding the trainable weights, optimiser,
scheduler, each rank's RNG states and the step. It is written under a temporary name and
renamed into place, so a crash never leaves a half-written checkpoint behind.
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

from cocoa.train.distributed import DistInfo, barrier

PREFIX = "step-"


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (adapters, heads, or everything in full fine-tuning)."""
    return {name: p.detach().cpu() for name, p in module.named_parameters() if p.requires_grad}


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
    if info.is_main:
        torch.save(trainable_state(module), tmp / "trainable.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    barrier()
    if info.is_main:
        (tmp / "state.json").write_text(json.dumps({"step": step, "world_size": info.world_size}))
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
    """Restore a checkpoint into the live objects; returns the step to continue from."""
    state = json.loads((path / "state.json").read_text())
    if state["world_size"] != info.world_size:
        raise RuntimeError(f"{path} was written by {state['world_size']} processes; resume with the same number "
                           f"(got {info.world_size})")
    weights = torch.load(path / "trainable.pt", map_location="cpu")
    missing = [n for n, p in module.named_parameters() if p.requires_grad and n not in weights]
    if missing:
        raise RuntimeError(f"{path}: checkpoint lacks trainable parameters, e.g. {missing[:3]}")
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name in weights:
                param.copy_(weights[name])
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / f"rng-{info.rank}.pt", weights_only=False))
    return int(state["step"])
