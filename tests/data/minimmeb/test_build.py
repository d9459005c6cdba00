"""cocoa.data.minimmeb.build: schemas, candidate counts, readers, manifest, determinism and reuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.data.captions import read_caption_corpus
from cocoa.data.eval_sets import list_eval_datasets, read_eval_dataset
from cocoa.data.items import IMAGE_PLACEHOLDER
from cocoa.data.minimmeb.build import META_TASKS, VERSION, Manifest, build_mini, write_readme_table
from cocoa.data.minimmeb.store import (
    CAPTION_SCHEMA,
    EVAL_SCHEMA,
    TRAIN_SCHEMA,
    VIDEO_EVAL_SCHEMA,
    VIDEO_TRAIN_SCHEMA,
)
from cocoa.data.minimmeb.wordings import HELD_OUT_SETS
from cocoa.data.train_pairs import read_train_pairs
from cocoa.evaluate.registry import VIDEO_META_TASKS
from tests.helpers import MINI_SIZES as SMALL


def _schema_matches(path: Path, schema: pa.Schema) -> None:
    assert pq.read_schema(path).remove_metadata().equals(schema), path


def test_eval_files_follow_mmeb_eval_schema(mini):
    out, manifest = mini
    for info in manifest.datasets:
        path = out / "eval" / f"{info.name}.parquet"
        if info.meta_task in VIDEO_META_TASKS:  # tests/data/minimmeb/test_videos.py
            _schema_matches(path, VIDEO_EVAL_SCHEMA)
            continue
        _schema_matches(path, EVAL_SCHEMA)
        rows = pq.read_table(path).to_pylist()
        assert len(rows) == info.queries > 0
        for row in rows:
            assert len(row["tgt_text"]) == len(row["tgt_img_path"])
            assert info.min_candidates <= len(row["tgt_text"]) <= info.max_candidates
            if row["qry_img_path"]:
                assert (out / "images" / row["qry_img_path"]).is_file()
                assert IMAGE_PLACEHOLDER in row["qry_text"]
            for text, image in zip(row["tgt_text"], row["tgt_img_path"], strict=True):
                assert text or image
                assert (IMAGE_PLACEHOLDER in text) == bool(image)


def test_datasets_cover_meta_tasks_with_ind_and_ood(mini):
    _, manifest = mini
    assert len(manifest.datasets) >= 12
    for task in META_TASKS:
        want = {"IND"} if task in ("video_qa", "moment_retrieval") else {"IND", "OOD"}
        assert {d.split for d in manifest.datasets if d.meta_task == task} == want


def test_candidate_counts_as_promised(mini):
    out, manifest = mini
    info = {d.name: d for d in manifest.datasets}
    assert info["FashionMNIST"].min_candidates == info["FashionMNIST"].max_candidates == 10
    assert info["FashionTinted"].max_candidates == 10
    assert info["EmojiGroup"].chance == round(100 / info["EmojiGroup"].max_candidates, 2)
    assert info["SceneT2I"].min_candidates == SMALL["pool"]
    assert info["SceneGrounding"].max_candidates == SMALL["grounding_candidates"]
    rows = pq.read_table(out / "eval" / "FashionMNIST.parquet").to_pylist()
    assert all(sorted(row["tgt_text"]) == sorted(rows[0]["tgt_text"]) for row in rows)


def test_train_and_pretrain_schemas(mini):
    out, manifest = mini
    for name, count in manifest.train_rows.items():
        path = out / "train" / f"{name}.parquet"
        _schema_matches(path, VIDEO_TRAIN_SCHEMA if name.startswith("Video") else TRAIN_SCHEMA)
        assert pq.read_metadata(path).num_rows == count > 0
    _schema_matches(out / "pretrain" / "stage1.parquet", CAPTION_SCHEMA)
    _schema_matches(out / "pretrain" / "stage2.parquet", VIDEO_TRAIN_SCHEMA)
    ood = {d.name for d in manifest.datasets if d.split == "OOD"}
    assert not ood & set(manifest.train_rows)
    assert set(manifest.train_rows) <= {d.name for d in manifest.datasets if d.split == "IND"}


def test_readers_load_the_build(mini):
    out, manifest = mini
    assert list_eval_datasets(out) == sorted(d.name for d in manifest.datasets)
    dataset = read_eval_dataset(out, "SceneT2I", out / "images")
    assert dataset.skipped == 0 and len(dataset.rows) == SMALL["queries"]
    assert Path(dataset.rows[0].candidates[0].image).is_absolute()
    pairs = read_train_pairs(out, None, out / "images", cap=25)
    assert len(pairs) == sum(min(25, rows) for rows in manifest.train_rows.values())
    stage2 = read_train_pairs(out / "pretrain" / "stage2.parquet", None, out / "images", cap=None)
    assert len(stage2) == manifest.pretrain_rows["stage2"]
    assert all(pair.positive.image is None for pair in stage2)
    captions = read_caption_corpus(out / "pretrain" / "stage1.parquet", out / "images")
    assert len(captions) == manifest.pretrain_rows["stage1"] and all(c.caption for c in captions)


def test_manifest_checksums_and_readme_table(mini):
    out, manifest = mini
    assert Manifest.from_json((out / "manifest.json").read_text()) == manifest
    videos = sum(d.meta_task in VIDEO_META_TASKS for d in manifest.datasets)  # no held-out wordings
    assert len(manifest.checksums) == ((1 + len(HELD_OUT_SETS)) * (len(manifest.datasets) - videos) + videos
                                       + len(manifest.train_rows) + 2)
    assert "dataset-fashion-mnist" in manifest.sources
    table = write_readme_table(manifest)
    assert table.count("\n") == len(manifest.datasets) + 2
    assert "| SceneT2I | retrieval | IND | 40 | 100 | 1.00 |" in table


def test_same_seed_same_checksums_and_reuse(mini, tmp_path):
    out, manifest = mini
    again = build_mini(tmp_path / "again", seed=0, **SMALL)
    assert again.checksums == manifest.checksums
    stamp = (out / "eval" / "FashionTinted.parquet").stat().st_mtime_ns
    assert build_mini(out, seed=0, **SMALL) == manifest
    assert (out / "eval" / "FashionTinted.parquet").stat().st_mtime_ns == stamp


def test_a_folder_built_without_a_held_out_copy_is_rebuilt(mini, tmp_path):
    out, manifest = mini
    copy = tmp_path / "old-layout"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "recombined")
    old = Manifest.from_json((copy / "manifest.json").read_text())
    old.checksums = {k: v for k, v in old.checksums.items() if not k.startswith("recombined/")}
    (copy / "manifest.json").write_text(old.to_json())
    assert build_mini(copy, seed=0, **SMALL).checksums == manifest.checksums
    assert (copy / "recombined" / "FashionMNIST.parquet").is_file()


def test_version_one_manifest_still_loads(mini):
    _, manifest = mini
    assert manifest.version == VERSION == 3
    data = json.loads(manifest.to_json())
    del data["version"]
    for info in data["datasets"]:
        del info["chance"]
    old = Manifest.from_json(json.dumps(data))
    assert old.version == 1 and old.datasets[0].name == manifest.datasets[0].name
