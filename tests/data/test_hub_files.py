"""Which files make a config's split in a local Hub dataset folder, and the rows of each form."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocoa.core.errors import DataError
from cocoa.data.hub_files import config_names, fields, iter_rows, split_files

RECORDS = [{"video_id": "a", "pos_text": "x"}, {"video_id": "b", "pos_text": "y"}]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def names(files: list[Path], root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in files]


def test_the_card_decides_and_names_are_inferred_without_one(tmp_path: Path) -> None:
    card = tmp_path / "card"
    write(card / "README.md", "---\nconfigs:\n- config_name: test_1k\n  data_files:\n  - split: test\n"
                              "    path: msrvtt_test_1k.json\n- config_name: train_9k\n  data_files:\n"
                              "  - split: train\n    path: msrvtt_train_9k.json\n---\n")
    write(card / "msrvtt_test_1k.json", json.dumps(RECORDS))
    write(card / "msrvtt_train_9k.json", json.dumps(RECORDS))
    assert names(split_files(card, "test_1k", "test"), card) == ["msrvtt_test_1k.json"]
    assert config_names(card) == ["test_1k", "train_9k"]
    with pytest.raises(DataError, match="declares several configs"):
        split_files(card, None, "test")
    bare = tmp_path / "bare"
    for split in ("train", "test"):
        write(bare / "data" / f"{split}.jsonl", "\n".join(json.dumps(r) for r in RECORDS))
    write(bare / "raw_data" / "notes.txt", "not rows")
    assert names(split_files(bare, None, "test"), bare) == ["data/test.jsonl"]
    with pytest.raises(DataError, match=r"split 'validation' \(row files here: data/test.jsonl, data/train.jsonl\)"):
        split_files(bare, None, "validation")


def test_config_folders_and_the_parquet_conversion(tmp_path: Path) -> None:
    for path in ("Subset/test-00000-of-00001.parquet", "MC/test-00000-of-00001.parquet",
                 "default/test/0000.parquet", "default/train/0000.parquet"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / path)
    assert names(split_files(tmp_path, "Subset", "test"), tmp_path) == ["Subset/test-00000-of-00001.parquet"]
    assert names(split_files(tmp_path, None, "test"), tmp_path) == ["default/test/0000.parquet"]
    with pytest.raises(DataError, match="config 'OE'"):
        split_files(tmp_path, "OE", "test")


def test_every_json_form_reads_as_records(tmp_path: Path) -> None:
    forms = {"list.json": json.dumps(RECORDS), "wrapped.json": json.dumps({"data": RECORDS}),
             "columns.json": json.dumps({"video_id": ["a", "b"], "pos_text": ["x", "y"]}),
             "lines.json": "\n".join(json.dumps(r) for r in RECORDS), "lines.jsonl": json.dumps(RECORDS[0]) + "\n\n"
             + json.dumps(RECORDS[1]) + "\n"}
    for name, text in forms.items():
        file = write(tmp_path / name, text)
        assert list(iter_rows(file)) == RECORDS and fields(file) == ["video_id", "pos_text"], name
    with pytest.raises(DataError, match="line 2"):
        list(iter_rows(write(tmp_path / "bad.jsonl", '{"a": 1}\n{oops\n')))
    with pytest.raises(DataError, match="expected a list of records"):
        list(iter_rows(write(tmp_path / "scalar.json", "3")))


def test_one_file_per_part_at_the_top(tmp_path: Path) -> None:
    write(tmp_path / "queries.jsonl", json.dumps({"query-id": 1, "query": "q"}) + "\n")
    assert names(split_files(tmp_path, "queries", "test"), tmp_path) == ["queries.jsonl"]
