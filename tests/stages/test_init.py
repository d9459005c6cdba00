"""cocoa.stages: every stage registered under its recipe name."""

from __future__ import annotations

import pytest

from cocoa.core.errors import ConfigError
from cocoa.stages import STAGES, get_stage


def test_every_stage_is_registered_under_its_recipe_name() -> None:
    assert list(STAGES) == ["pretrain", "warmup", "bridge", "contrastive"]
    assert all(get_stage(name).name == name for name in STAGES)
    with pytest.raises(ConfigError, match="unknown stage 'finetune'; known: pretrain, warmup, bridge, contrastive"):
        get_stage("finetune")
