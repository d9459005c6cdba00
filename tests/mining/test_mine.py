"""cocoa.mining.mine and ``cocoa mine``: a plan and negatives from a teacher, resumed, read by stage 3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.core.errors import ConfigError
from cocoa.data.items import Item
from cocoa.data.train_pairs import read_train_pairs
from cocoa.inference import corpus_encoder
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.inference.embedder import Embedder
from cocoa.mining import mine as mine_module
from cocoa.mining.mine import EMBEDDINGS_FILE, ENCODED_DIR, MineSettings, mine, rank_distinct, rank_targets
from cocoa.pipeline.train_stage import train_stage
from cocoa.train.community_batches import CommunityPlan
from tests.helpers import free_port, read_metrics, tiny_recipe, torchrun

SUBSETS = "FashionMNIST,SceneT2I"


@pytest.fixture(scope="module")
def mined(mini_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    result = CliRunner().invoke(app, ["mine", "--data", str(mini_dir), "--teacher", str(model_dir), "--out", str(out),
                                      "--subsets", SUBSETS, "--cap", "16", "--p", "1", "--m", "4", "--size", "4",
                                      "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    return out


def distinct_order(query: np.ndarray, positives: list[Item], vectors: np.ndarray) -> list[tuple[str, str]]:
    """The distinct positive contents (text, image path) by decreasing similarity to ``query``."""
    first: dict[tuple[str, str], int] = {}
    for i, item in enumerate(positives):
        first.setdefault((item.text, str(item.image or "")), i)
    return sorted(first, key=lambda content: -float(query @ vectors[first[content]]))


def test_distinct_ranking_never_offers_a_query_its_own_answer_under_another_row() -> None:
    vectors = np.eye(4, dtype=np.float32)[[0, 0, 1, 2, 3]]  # rows 0 and 1: one class label
    queries = vectors + np.float32(0.1) * np.array([[0, 0, 1, 0.5], [0, 0, 1, 0.5], [1, 0, 0, 0], [0, 1, 0, 0],
                                                    [0, 0, 1, 0]], dtype=np.float32)
    ranked = rank_distinct(queries, vectors, ["cat", "cat", "dog", "owl", "fox"], 4)
    assert ranked[0].tolist()[1:] == ranked[1].tolist()[1:] == [3, 4, 2] and ranked[0][0] == ranked[1][0] == -1
    assert ranked[2].tolist()[:2] == [-1, ranked[2][1]] and ranked[2][1] in (0, 1)  # the label, by one of its rows
    plain = rank_distinct(queries, vectors, ["a", "b", "c", "d", "e"], 5)
    full = rank_targets(queries, vectors, 5)
    assert (plain == np.where(full == np.arange(5)[:, None], -1, full)).all()


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
    assert all(len(p.negatives) == 1 for p in again)  # stage 3 reads them as hard negatives


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


def test_a_subset_with_its_own_ranks_draws_its_negatives_there(mined: Path, mini_dir: Path, model_dir: Path,
                                                                tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(mined / EMBEDDINGS_FILE, own)  # the same teacher and rows: ranked again, not encoded
    args = ["mine", "--data", str(mini_dir), "--teacher", str(model_dir), "--out", str(own), "--subsets", SUBSETS,
            "--cap", "16", "--p", "1", "--m", "4", "--size", "4", "--batch-size", "8",
            "--subset-ranks", "FashionMNIST=0,2"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CommunityPlan.load(own).manifest["subsets"] == {"FashionMNIST": [0, 2]}
    pairs = read_train_pairs(mini_dir, SUBSETS.split(","), mini_dir / "images", cap=16, seed=0)
    with np.load(own / EMBEDDINGS_FILE) as saved:
        queries, targets = saved["queries"], saved["targets"]
    for subset, (p, m) in {"FashionMNIST": (0, 2), "SceneT2I": (1, 4)}.items():
        rows = [i for i, pair in enumerate(pairs) if pair.subset == subset]
        written = [json.loads(line) for line in (own / "negatives" / "train" / f"{subset}.jsonl").read_text().splitlines()]
        assert sum("neg_text" in row for row in written) == len(rows)
        for q, row in enumerate(written):
            order = distinct_order(queries[rows[q]], [pairs[i].positive for i in rows], targets[rows])
            negative = (row["neg_text"], row["neg_image_path"])
            assert negative != (row["pos_text"], row["pos_image_path"])  # never the query's own answer
            assert p <= order.index(negative) < p + m, (subset, q, order.index(negative))
    bad = CliRunner().invoke(app, [*args[:-1], "FashionMNIST=two"])
    assert bad.exit_code == 2 and "expected SUBSET=P,M" in bad.output


def test_a_subset_with_no_more_targets_than_p_is_named_counted_and_keeps_its_own_negatives(mined: Path, mini_dir: Path, model_dir: Path,
                                                                   tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                   ) -> None:
    shutil.copy(mined / EMBEDDINGS_FILE, tmp_path)
    pairs = read_train_pairs(mini_dir, SUBSETS.split(","), mini_dir / "images", cap=16, seed=0)
    labels = len({pair.positive.key() for pair in pairs if pair.subset == "FashionMNIST"})
    with caplog.at_level("WARNING", logger="cocoa.mining.mine"):
        plan = mine(pairs, Embedder.from_pretrained(model_dir), tmp_path,
                    MineSettings(p=labels, m=4, size=4, batch_size=8))
    assert f"subset FashionMNIST has {labels} distinct targets, not more than p={labels}" in caplog.text
    assert "SceneT2I" not in caplog.text
    assert plan.manifest["without_negatives"]["FashionMNIST"] == 16
    written = read_train_pairs(tmp_path / "negatives", SUBSETS.split(","), mini_dir / "images")
    own = [pair.negatives for pair in pairs if pair.subset == "FashionMNIST"]
    assert [pair.negatives for pair in written if pair.subset == "FashionMNIST"] == own and all(own)


def test_a_rerun_with_other_settings_never_leaves_the_old_plan_beside_new_negatives(
        mined: Path, mini_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "plan"
    shutil.copytree(mined, out)
    pairs = read_train_pairs(mini_dir, ["SceneT2I"], mini_dir / "images", cap=16, seed=0)
    teacher = Embedder.from_pretrained(model_dir)
    real = mine_module.negatives_rows

    def killed(*args: object) -> list[dict]:
        raise KeyboardInterrupt

    monkeypatch.setattr(mine_module, "negatives_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        mine(pairs, teacher, out, MineSettings(p=1, m=3, size=4, batch_size=8))
    assert not (out / "plan.json").exists() and not (out / "negatives").exists()
    monkeypatch.setattr(mine_module, "negatives_rows", real)
    plan = mine(pairs, teacher, out, MineSettings(p=1, m=3, size=4, batch_size=8))
    assert plan.manifest["m"] == 3 and plan.rows == 16
    assert sorted(f.name for f in (out / "negatives" / "train").iterdir()) == ["SceneT2I.jsonl"]


def test_n_negatives_a_query_are_distinct_strong_ranks_read_back_in_order(mined: Path, mini_dir: Path,
                                                                          model_dir: Path, tmp_path: Path) -> None:
    many = tmp_path / "many"
    many.mkdir()
    shutil.copy(mined / EMBEDDINGS_FILE, many)
    args = ["mine", "--data", str(mini_dir), "--teacher", str(model_dir), "--out", str(many), "--subsets", "SceneT2I",
            "--cap", "16", "--p", "1", "--m", "4", "--size", "4", "--batch-size", "8"]
    assert CliRunner().invoke(app, [*args, "--negatives", "3"]).exit_code == 0
    assert CommunityPlan.load(many).manifest["negatives"] == 3
    pairs = read_train_pairs(mini_dir, ["SceneT2I"], mini_dir / "images", cap=16, seed=0)
    with np.load(many / EMBEDDINGS_FILE) as saved:
        assert saved["queries"].shape[0] == 16  # SceneT2I alone: encoded again, not the fixture's two subsets
        queries, targets = saved["queries"], saved["targets"]
    written = [json.loads(line) for line in (many / "negatives" / "train" / "SceneT2I.jsonl").read_text().splitlines()]
    assert all(len(row["extra_negatives"]) == 2 for row in written)
    for q, pair in enumerate(read_train_pairs(many / "negatives", ["SceneT2I"], mini_dir / "images")):
        order = distinct_order(queries[q], [p.positive for p in pairs], targets)
        picked = [order.index((n.text, str(n.image or ""))) for n in pair.negatives]
        assert len(set(picked)) == 3 and all(1 <= rank < 5 for rank in picked), (q, picked)
        assert pair.positive not in pair.negatives
    too_many = CliRunner().invoke(app, [*args, "--negatives", "5"])
    assert too_many.exit_code != 0 and "5 negatives per query do not fit the window of m=4" in too_many.output


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


def test_mining_killed_while_encoding_resumes_at_the_first_unfinished_shard(
        mini_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = read_train_pairs(mini_dir, SUBSETS.split(","), mini_dir / "images", cap=16, seed=0)
    teacher, settings = Embedder.from_pretrained(model_dir, device="cpu"), MineSettings(p=1, m=4, size=4, batch_size=8)
    whole = mine(pairs, teacher, tmp_path / "whole", settings, shard_size=8)
    with np.load(tmp_path / "whole" / EMBEDDINGS_FILE) as saved:  # the shards embed the items themselves
        np.testing.assert_allclose(saved["queries"], teacher.encode_items([p.query for p in pairs]), atol=1e-6)
        np.testing.assert_allclose(saved["targets"], teacher.encode_items([p.positive for p in pairs]), atol=1e-6)
    real, encoded = corpus_encoder.encode_rows, []

    def killed_on_the_third_shard(embedder: Embedder, rows: list, *args: object, **kwargs: object) -> np.ndarray:
        if len(encoded) == 2:
            raise KeyboardInterrupt
        encoded.append(len(rows))
        return real(embedder, rows, *args, **kwargs)

    monkeypatch.setattr(corpus_encoder, "encode_rows", killed_on_the_third_shard)
    with pytest.raises(KeyboardInterrupt):
        mine(pairs, teacher, tmp_path / "cut", settings, shard_size=8)
    assert len(list((tmp_path / "cut" / ENCODED_DIR / "queries").glob("shard-*.parquet"))) == 2
    encoded.clear()
    monkeypatch.setattr(corpus_encoder, "encode_rows", lambda *a, **k: encoded.append(len(a[1])) or real(*a, **k))
    plan = mine(pairs, teacher, tmp_path / "cut", settings, shard_size=8)
    assert sum(encoded) == 2 * 32 - 16  # the two finished query shards are not encoded again
    assert plan.communities == whole.communities and not (tmp_path / "cut" / ENCODED_DIR).exists()


@pytest.mark.slow
def test_two_ranks_mine_the_plan_one_process_mines(mini_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    args = ["-m", "cocoa", "mine", "--data", str(mini_dir), "--teacher", str(model_dir), "--subsets", SUBSETS,
            "--cap", "16", "--p", "1", "--window", "4", "--size", "4", "--batch-size", "8", "--shard-size", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([*torchrun(), "--nproc_per_node", "2", "--master-addr", "127.0.0.1", "--master-port",
                          str(free_port()), *args, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "encode (rank 1)" in two.stderr  # the second process encoded its share of the shards
    plans = [json.loads((tmp_path / name / "plan.json").read_text()) for name in ("one", "two")]
    assert plans[0]["communities"] == plans[1]["communities"]
    with np.load(tmp_path / "one" / EMBEDDINGS_FILE) as a, np.load(tmp_path / "two" / EMBEDDINGS_FILE) as b:
        np.testing.assert_array_equal(a["queries"], b["queries"])
        np.testing.assert_array_equal(a["targets"], b["targets"])
