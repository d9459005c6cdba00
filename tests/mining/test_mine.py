"""cocoa.mining.mine and ``cocoa mine``: a plan and negatives from a teacher, resumed, read by stage 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.core.errors import ConfigError
from cocoa.data.train_pairs import read_train_pairs
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.pipeline.train_stage import train_stage
from cocoa.train.community_batches import CommunityPlan
from tests.helpers import read_metrics, tiny_recipe

SUBSETS = "FashionMNIST,SceneT2I"


@pytest.fixture(scope="module")
def mined(mini_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    result = CliRunner().invoke(app, ["mine", "--data", str(mini_dir), "--teacher", str(model_dir), "--out", str(out),
                                      "--subsets", SUBSETS, "--cap", "16", "--p", "1", "--m", "4", "--size", "4",
                                      "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    return out


def test_the_plan_covers_the_rows_stage_3_reads(mined: Path, mini_dir: Path, model_dir: Path) -> None:
    plan = CommunityPlan.load(mined)
    pairs = read_train_pairs(mini_dir, SUBSETS.split(","), mini_dir / "images", cap=16, seed=0)
    assert sorted(r for c in plan.communities for r in c) == list(range(len(pairs))) == list(range(32))
    subset_of = [p.subset for p in pairs]
    assert all(len({subset_of[r] for r in c}) == 1 for c in plan.communities)  # cut per subset
    assert plan.manifest["teacher"] == BatchEncoder.from_pretrained(model_dir, device="cpu").fingerprint()
    assert (plan.manifest["p"], plan.manifest["m"], plan.manifest["size"], plan.batch_size) == (1, 4, 4, 8)


def test_negatives_are_other_rows_positives_in_mmeb_train_columns(mined: Path, mini_dir: Path) -> None:
    rows = [json.loads(line) for line in (mined / "negatives" / "train" / "SceneT2I.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {"qry", "qry_image_path", "pos_text", "pos_image_path", "neg_text"} <= set(rows[0])
    positives = [(r["pos_text"], r["pos_image_path"]) for r in rows]
    for i, row in enumerate(rows):
        assert (row["neg_text"], row["neg_image_path"]) in positives[:i] + positives[i + 1:]
    again = read_train_pairs(mined / "negatives", ["SceneT2I"], mini_dir / "images")
    assert all(p.negative is not None for p in again)  # stage 3 reads them as hard negatives


def test_a_rerun_resumes_without_encoding(mined: Path, mini_dir: Path, model_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    before = (mined / "plan.json").read_bytes()
    monkeypatch.setattr(BatchEncoder, "encode_items", lambda *a, **k: pytest.fail("encoded again"))
    args = ["mine", "--data", str(mini_dir), "--teacher", str(model_dir), "--out", str(mined), "--subsets", SUBSETS,
            "--cap", "16", "--p", "1", "--m", "4", "--size", "4", "--batch-size", "8"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (mined / "plan.json").read_bytes() == before
    (mined / "plan.json").unlink()  # killed after encoding: the plan is rebuilt from the saved vectors
    assert CliRunner().invoke(app, args).exit_code == 0
    assert json.loads((mined / "plan.json").read_text())["communities"] == json.loads(before)["communities"]


def test_stage_3_trains_on_the_plan_and_refuses_one_for_other_rows(mined: Path, mini_dir: Path,
                                                                   tmp_path: Path) -> None:
    sets = ["model.path=null", "model.tiny=tiny", f"data.subsets=[{SUBSETS}]", f"data.batches={mined}"]
    recipe = tiny_recipe("contrastive", mini_dir, tmp_path / "planned", *sets, steps=3, batch=8)
    train_stage(recipe)
    losses = [m["loss"] for m in read_metrics(tmp_path / "planned") if "loss" in m]
    assert len(losses) == 3 and np.isfinite(losses).all()
    card = (tmp_path / "planned" / "model" / "README.md").read_text()
    assert "mined (B3): teacher" in card and "ranks [1, 5), communities of 4" in card
    other = tiny_recipe("contrastive", mini_dir, tmp_path / "stale", *sets[:2], "data.subsets=[FashionMNIST]",
                        f"data.batches={mined}", steps=1, batch=8)
    with pytest.raises(ConfigError, match="another training set"):
        train_stage(other)
    warmup = tiny_recipe("warmup", mini_dir, tmp_path / "warmup", *sets[:2], f"data.batches={mined}", steps=1)
    with pytest.raises(ConfigError, match="contrastive stage only"):
        train_stage(warmup)
