"""cocoa.data.train_pairs: MMEB-train pairs in their layouts, with videos, bad rows named, capped."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocoa.core.errors import DataError
from cocoa.data.minimmeb.store import TRAIN_SCHEMA
from cocoa.data.train_pairs import list_train_subsets, read_train_pairs
from tests.helpers import CLASSIFY_QUERY as IMG
from tests.helpers import VIDEO_PAIR_ROWS as ROWS
from tests.helpers import write_video_pairs as write_pairs


def _train_row(**change: str) -> dict:
    row = {"qry": IMG, "qry_image_path": "a.png", "pos_text": "cat", "pos_image_path": "",
           "neg_text": "dog", "neg_image_path": ""}
    return {**row, **change}


def test_train_hf_layout_splits_and_cap(tmp_path, images):
    subset = tmp_path / "hf" / "Toy"
    subset.mkdir(parents=True)
    rows = [_train_row(pos_text=f"label {i}") for i in range(30)]
    pq.write_table(pa.Table.from_pylist(rows, schema=TRAIN_SCHEMA), subset / "original-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:5], schema=TRAIN_SCHEMA),
                   subset / "diverse_instruction-00000-of-00001.parquet")
    assert list_train_subsets(tmp_path / "hf") == ["Toy"]
    assert len(read_train_pairs(tmp_path / "hf", None, images, cap=None)) == 30
    assert len(read_train_pairs(tmp_path / "hf", ["Toy"], images, split="diverse_instruction")) == 5
    capped = read_train_pairs(tmp_path / "hf", ["Toy"], images, cap=10, seed=1)
    assert len(capped) == 10 and capped == read_train_pairs(tmp_path / "hf", ["Toy"], images, cap=10, seed=1)
    assert capped != read_train_pairs(tmp_path / "hf", ["Toy"], images, cap=10, seed=2)
    assert capped[0].subset == "Toy" and capped[0].negatives[0].text == "dog"
    with pytest.raises(DataError, match="unknown train subset"):
        read_train_pairs(tmp_path / "hf", ["Nope"], images)


def test_train_jsonl_bad_rows(tmp_path, images):
    path = tmp_path / "Toy.jsonl"
    rows = [_train_row(), _train_row(qry_image_path="corrupt.png"), _train_row(pos_text=""),
            _train_row(neg_text="", neg_image_path="")]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    with pytest.raises(DataError) as caught:
        read_train_pairs(path, None, images)
    assert (caught.value.file, caught.value.row, caught.value.field) == (str(path), 1, "qry_image_path")
    pairs = read_train_pairs(path, None, images, skip_bad=True)
    assert pairs.skipped == 2 and len(pairs) == 2 and pairs[1].negatives == ()
    path.write_text(json.dumps({**_train_row(), "extra": 1}) + "\n")
    with pytest.raises(DataError, match="unknown field") as caught:
        read_train_pairs(path, None, images)
    assert (caught.value.row, caught.value.field) == (0, "extra")


def test_extra_negatives_follow_the_neg_columns_and_bad_ones_are_named(tmp_path: Path, images: Path) -> None:
    path = tmp_path / "Toy.jsonl"
    extra = [{"neg_text": "fox"}, {"neg_text": "", "neg_image_path": "a.png", "neg_video_path": None}]
    rows = [{**_train_row(), "extra_negatives": extra}, _train_row(neg_text="", extra_negatives=[{"neg_text": "owl"}])]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    first, second = read_train_pairs(path, None, images)
    assert [(n.text, n.image) for n in first.negatives] == [("dog", None), ("fox", None), ("", str(images / "a.png"))]
    assert [n.text for n in second.negatives] == ["owl"]
    for bad, field in (([{"neg_text": "x"}, {"neg_text": ""}], "extra_negatives[1].neg_text"),
                       ([{"neg_image_path": "corrupt.png"}], "extra_negatives[0].neg_image_path"),
                       ([{"neg_txt": "x"}], "extra_negatives[0]"), ("fox", "extra_negatives")):
        path.write_text(json.dumps({**_train_row(), "extra_negatives": bad}) + "\n")
        with pytest.raises(DataError) as caught:
            read_train_pairs(path, None, images)
        assert (caught.value.file, caught.value.row, caught.value.field) == (str(path), 0, field)


def test_video_columns_become_video_items(video_dir: Path, tmp_path: Path) -> None:
    pairs = read_train_pairs(write_pairs(tmp_path, ROWS), None, video_dir)
    assert pairs[0].query.video == str(video_dir / "clip") and pairs[0].positive.video is None
    assert pairs[1].positive.video == str(video_dir / "long") and pairs[2].positive.video == str(video_dir / "clip.mp4")
    bad = {**ROWS, "qry_video_path": ["gone", "", "", "still"]}
    with pytest.raises(DataError, match="video frame folder not found") as caught:
        read_train_pairs(write_pairs(tmp_path / "bad", bad), None, video_dir)
    assert caught.value.field == "qry_video_path" and caught.value.row == 0
