"""cocoa.pipeline.driver: stage folders, shipped pipelines, chance from the manifest, the eval section."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from cocoa.core.errors import ConfigError
from cocoa.core.hub import is_hub_id
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.minimmeb.build import DatasetInfo, Manifest
from cocoa.data.train_pairs import read_train_pairs
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.pipeline import driver
from cocoa.pipeline.driver import EvalSection, load_pipeline, mini_chance, stage_folder
from cocoa.recipe import builtin, load_recipe
from cocoa.stages import get_stage
from cocoa.train.community_batches import CommunityPlan
from tests.helpers import base_overrides, stage_overrides


def test_the_eval_section_takes_what_cocoa_eval_takes_and_builds_the_same_encoder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def load_encoder(*args: Any) -> str:
        calls.append(args)
        return "encoder"

    def evaluate(encoder: str, data: Path, out: Path, **kwargs: Any) -> Any:
        assert encoder == "encoder"
        raise StopIteration(kwargs)

    monkeypatch.setattr("cocoa.evaluate.encoder.load_encoder", load_encoder)
    monkeypatch.setattr("cocoa.evaluate.runner.evaluate", evaluate)
    section = EvalSection.model_validate({"protocol": {"preset": "cocoa-release", "image": {"square": 352}},
                                          "frames": 4, "pack_tokens": 256, "workers": 1, "batch_size": 8})
    with pytest.raises(StopIteration) as stopped:
        driver.evaluate_model(tmp_path / "model", section, tmp_path / "data", tmp_path / "eval")
    [(model, workers, protocol, frames, pack_tokens)] = calls
    assert (model, workers, frames, pack_tokens) == (tmp_path / "model", 1, 4, 256)
    assert protocol.name == "cocoa-release" and protocol.image.square == 352
    assert protocol.embedding_token == PROTOCOLS["cocoa-release"].embedding_token
    assert stopped.value.value["batch_size"] == 8


def test_a_protocol_name_alone_is_refused_like_in_a_stage_recipe(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"stages": [{"recipe": "builtin:tiny/contrastive"}], "eval": {"protocol": "cocoa"}}))
    with pytest.raises(ConfigError, match=r"eval\.protocol"):
        load_pipeline(path)


def test_stage_folders_are_numbered_by_stage_and_never_shared(tmp_path: Path) -> None:
    mini, base = load_pipeline("builtin:pipelines/mini")
    assert [f.name for f in driver.stage_folders(mini, base, tmp_path)] == [
        "0-pretrain", "1-warmup", "2-bridge", "3-contrastive"]
    twice = driver.Pipeline.model_validate({"stages": [{"recipe": "builtin:tiny/contrastive"}] * 2})
    with pytest.raises(ConfigError, match="3-contrastive; give them distinct names"):
        driver.run_pipeline(twice, tmp_path, tmp_path / "out")
    named = driver.Pipeline.model_validate({"stages": [{"recipe": "builtin:tiny/contrastive", "name": "a"},
                                                       {"recipe": "builtin:tiny/contrastive", "name": "b"}]})
    assert [f.name for f in driver.stage_folders(named, tmp_path, tmp_path)] == ["3-a", "3-b"]


def _manifest(chances: list[float]) -> Manifest:
    datasets = [DatasetInfo(f"D{i}", "classification", "IND", 10, 4, 4, chance) for i, chance in enumerate(chances)]
    return Manifest(seed=0, params={}, datasets=datasets, train_rows={}, pretrain_rows={}, sources={}, version=2)


def test_chance_comes_from_the_manifest_and_version_one_has_none(tmp_path):
    assert mini_chance(tmp_path) is None
    (tmp_path / "manifest.json").write_text(_manifest([25.0, 10.0]).to_json())
    assert mini_chance(tmp_path) == {"D0": 25.0, "D1": 10.0}
    version_one = json.loads(_manifest([25.0, 10.0]).to_json())  # version 1 wrote no chance per dataset
    version_one["version"] = 1
    for entry in version_one["datasets"]:
        del entry["chance"]
    (tmp_path / "manifest.json").write_text(json.dumps(version_one))
    assert mini_chance(tmp_path) is None


@pytest.mark.parametrize("pipeline", ["mini", "paper-qwen2-vl-2b"])
def test_shipped_recipes_chain_through_the_folders_cocoa_run_writes(pipeline: str) -> None:
    spec, base = load_pipeline(f"builtin:pipelines/{pipeline}")
    recipes = [load_recipe(entry.recipe if entry.recipe.startswith("builtin:") else base / entry.recipe)
               for entry in spec.stages]
    out = Path(recipes[0].train.output_dir).parent
    numbers = [get_stage(recipe.stage).number for recipe in recipes]
    assert numbers == sorted(numbers) and numbers[-1] == 3  # folders are numbered by stage: 3-contrastive
    for index, recipe in enumerate(recipes):
        assert Path(recipe.train.output_dir) == stage_folder(out, numbers[index], recipe.stage)
        if index:
            assert Path(recipe.model.path) == stage_folder(out, numbers[index - 1], recipes[index - 1].stage) / "model"


@pytest.mark.parametrize(("name", "patch"), [("paper-qwen2-vl-2b", 14), ("paper-qwen2-vl-2b-b3", 14),
                                           ("paper-qwen2.5-vl-3b", 14),
                                           ("paper-qwen2.5-vl-7b", 14), ("paper-qwen3-vl-2b", 16),
                                           ("paper-qwen3-vl-8b", 16)])
def test_paper_pipelines_validate_with_whole_merge_windows(name: str, patch: int, tmp_path: Path) -> None:
    pipeline, _ = load_pipeline(f"builtin:pipelines/{name}")
    stages = [load_recipe(builtin(entry.recipe.removeprefix("builtin:")),
                          [*base_overrides(tmp_path), *pipeline.set, *entry.set])
              for entry in pipeline.stages]
    assert [r.stage for r in stages] == ["warmup", "bridge", "contrastive"]
    base = stages[0].model.path  # the base model's Hub id
    assert base is not None and is_hub_id(base) and base.startswith("Qwen/") and base.endswith("-Instruct")
    for recipe in stages:
        image = recipe.protocol.resolve().image
        assert recipe.protocol.preset == "cocoa-release"
        if image.square is not None:
            assert image.square % (2 * patch) == 0, (recipe.stage, image)
        else:
            side = math.isqrt(image.min_pixels or 0)
            assert image.min_pixels == image.max_pixels == side * side and side % (2 * patch) == 0, recipe.stage
    assert stages[1].bridge.targets == "raw"
    assert pipeline.eval.protocol is not None and pipeline.eval.protocol.resolve() == PROTOCOLS["cocoa-release"]


def test_a_stage_mines_its_batches_with_the_previous_model_first(mini_dir: Path, tmp_path: Path) -> None:
    out, subsets = tmp_path / "run", "data.subsets=[FashionMNIST, SceneT2I]"
    first = [*stage_overrides("contrastive", mini_dir, out / "3-contrastive", 1), "model.path=null",
             "model.tiny=tiny", subsets]
    mined = driver.MineEntry(p=1, m=4, size=4, subsets={"FashionMNIST": (0, 3)}, negatives=2)
    pipeline = driver.Pipeline(
        data_root=str(mini_dir), eval={"data": str(mini_dir), "datasets": ["FashionMNIST"], "batch_size": 16},
        stages=[driver.StageEntry(recipe="builtin:tiny/contrastive", set=first),
                driver.StageEntry(recipe="builtin:tiny/contrastive", name="b3", mine=mined,
                                  set=[*stage_overrides("contrastive", mini_dir, out / "3-b3", 2, batch=8), subsets])])
    driver.run_pipeline(pipeline, Path(builtin("pipelines/mini")).parent, out)
    plan = CommunityPlan.load(out / "3-b3" / "plan")
    teacher = BatchEncoder.from_pretrained(out / "3-contrastive" / "model", device="cpu").fingerprint()
    assert (plan.manifest["teacher"], plan.batch_size, plan.rows) == (teacher, 8, 32)
    assert plan.manifest["subsets"] == {"FashionMNIST": [0, 3]} and plan.manifest["p"] == 1
    trained = yaml.safe_load((out / "3-b3" / "recipe.yaml").read_text())["data"]
    assert trained["batches"] == str(out / "3-b3" / "plan")
    assert (trained["root"], trained["images"]) == (str(out / "3-b3" / "plan" / "negatives"), str(mini_dir / "images"))
    section = yaml.safe_load((out / "3-b3" / "recipe.yaml").read_text())["contrastive"]
    assert (section["hard_negatives"], section["negatives_per_query"]) == (True, 2)
    assert all(len(p.negatives) == 2 for p in read_train_pairs(Path(trained["root"]), None, mini_dir / "images"))
    card = (out / "3-b3" / "model" / "README.md").read_text()
    assert "mined (B3): teacher" in card and f"mined into {out / '3-b3' / 'plan' / 'negatives'}" in card
    record = EmbeddingSpec.load(out / "3-b3" / "model").training
    assert (record["batches"]["plan"], record["batches"]["teacher"]) == (str(out / "3-b3" / "plan"), teacher)
    assert record["hard_negatives"] == {"data": trained["root"], "per_query": 2, "plan": str(out / "3-b3" / "plan")}
    assert EmbeddingSpec.load(out / "3-contrastive" / "model").training["batches"] is None

    with pytest.raises(ValueError, match="5 negatives per query do not fit the window of m=3 ranks of subset A"):
        driver.MineEntry(m=20, subsets={"A": (0, 3)}, negatives=5)

    alone = driver.Pipeline(data_root=str(mini_dir), stages=[driver.StageEntry(
        recipe="builtin:tiny/contrastive", mine=mined, set=stage_overrides("contrastive", mini_dir, tmp_path / "x", 1))])
    with pytest.raises(ConfigError, match="mines with the previous stage's model"):
        driver.run_pipeline(alone, tmp_path, tmp_path / "alone")
