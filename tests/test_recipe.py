"""cocoa.recipe: overrides, errors that name the field, and missing sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoa.core.errors import ConfigError
from cocoa.recipe import apply_overrides, load_recipe, parse_recipe
from tests.helpers import base_overrides, recipe_path


def test_recipe_overrides_parse(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_path("contrastive"), [*base_overrides(tmp_path), "train.lr=1e-3",
                                                      "train.max_steps=5", "train.epochs=null",
                                                      "contrastive.gradcache_chunk=null", "data.subsets=[A, B]",
                                                      "train.lora.r=4"])
    assert recipe.train.lr == pytest.approx(1e-3) and recipe.train.max_steps == 5 and recipe.train.epochs is None
    assert recipe.contrastive.gradcache_chunk is None and recipe.data.subsets == ["A", "B"]
    assert recipe.train.lora is not None and recipe.train.lora.r == 4 and recipe.train.lora.dropout == 0.1
    assert recipe.data.root == str(tmp_path)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x=y"]) == {"a": {"b": 1, "c": "x=y"}}


@pytest.mark.parametrize(("overrides", "field"), [
    (["train.lrr=0.1"], "train.lrr"),
    (["bogus=1"], "bogus"),
    (["train.lr=-0.001"], "train.lr"),
    (["train.batch_size=0"], "train.batch_size"),
    (["contrastive.attention=sideways"], "contrastive.attention"),
    (["model.tiny=tiny"], "model"),
    (["train.max_steps=3"], "train"),
    (["stage=finetune"], "stage"),
])
def test_recipe_errors_name_the_field(tmp_path: Path, overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe_path("bridge"), [*base_overrides(tmp_path), *overrides])
    assert f"  {field}:" in str(info.value)
    if overrides == ["model.tiny=tiny"]:
        assert "model.path" in str(info.value) and "model.tiny" in str(info.value)


@pytest.mark.parametrize("bad", ["train.lr", "train.lr.x=1"])
def test_bad_override_strings(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="override"):
        load_recipe(recipe_path("bridge"), [*base_overrides(tmp_path), bad])


def test_parse_recipe_missing_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_recipe({"stage": "bridge", "model": {"tiny": "tiny"}})
    assert "  data:" in str(info.value) and "  train:" in str(info.value)


def test_a_recipe_naming_an_unknown_stage_is_refused_naming_the_field() -> None:
    raw = {"stage": "finetune", "model": {"tiny": "tiny"}, "data": {"root": "d"},
           "train": {"output_dir": "o", "max_steps": 1}}
    with pytest.raises(ConfigError) as info:
        parse_recipe(raw)
    assert "  stage: Value error, unknown stage 'finetune'" in str(info.value)
