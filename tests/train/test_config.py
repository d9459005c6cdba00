"""cocoa.train.config: FSDP is for full fine-tuning only."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoa.core.errors import ConfigError
from cocoa.recipe import builtin, load_recipe
from tests.helpers import base_overrides


def test_fsdp_is_for_full_fine_tuning(tmp_path: Path) -> None:
    paper = builtin("paper/contrastive")
    with pytest.raises(ConfigError) as info:
        load_recipe(paper, [*base_overrides(tmp_path), "train.parallel=fsdp"])
    assert "  train:" in str(info.value) and "train.parallel=fsdp" in str(info.value) and "train.lora" in str(info.value)
    recipe = load_recipe(paper, [*base_overrides(tmp_path), "train.parallel=fsdp", "train.lora=null"])
    assert recipe.train.parallel == "fsdp" and recipe.train.lora is None
    assert load_recipe(paper, base_overrides(tmp_path)).train.parallel == "ddp"
