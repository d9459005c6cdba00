"""The training stages, registered by name: the one table the recipe and the driver look up."""

from __future__ import annotations

from cocoa.core.errors import ConfigError
from cocoa.stages.base import Stage, StageParts
from cocoa.stages.bridge import BridgeStage
from cocoa.stages.contrastive import ContrastiveStage
from cocoa.stages.pretrain import PretrainStage
from cocoa.stages.warmup import WarmupStage

#: Every stage by its recipe name, in pipeline order.
STAGES: dict[str, Stage] = {s.name: s for s in (PretrainStage(), WarmupStage(), BridgeStage(), ContrastiveStage())}


def get_stage(name: str) -> Stage:
    """The registered stage called ``name``."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; known: {', '.join(STAGES)}")
    return STAGES[name]


__all__ = ["STAGES", "Stage", "StageParts", "get_stage"]
