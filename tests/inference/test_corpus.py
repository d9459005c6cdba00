"""Corpus inputs stream JSONL, parquet and image folders, and check a row only when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cocoa.core.errors import DataError
from cocoa.inference.corpus import Corpus, read_rows


def test_the_three_kinds_give_the_same_rows(image_dir: Path, tmp_path: Path) -> None:
    rows = [{"id": "x", "text": "a sneaker"}, {"image": "a.png", "tag": 3}, {"text": "what?", "image": "d.png"}]
    jsonl = image_dir / "corpus.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")
    parquet = image_dir / "corpus.parquet"
    pq.write_table(pa.table({key: [r.get(key) for r in rows] for key in ("id", "text", "image", "tag")}), parquet)
    from_jsonl, from_parquet = list(Corpus(jsonl).rows()), list(Corpus(parquet).rows())
    assert len(Corpus(jsonl)) == len(Corpus(parquet)) == 3
    assert [r.id for r in from_jsonl] == ["x", 2, 4]  # the line number by default (the blank line counts)
    assert [r.id for r in from_parquet] == ["x", 2, 3]  # the row number
    for a, b in zip(from_jsonl, from_parquet, strict=True):
        assert a.as_input() == b.as_input()
    assert from_jsonl[1].image == str((image_dir / "a.png").resolve()) and from_jsonl[1].raw["tag"] == 3

    folder = tmp_path / "photos"
    (folder / "b").mkdir(parents=True)
    for name in ("b/2.png", "b/10.jpg", "a.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    listed = list(Corpus(folder).rows())
    assert [r.id for r in listed] == ["a.png", "b/10.jpg", "b/2.png"] and len(Corpus(folder)) == 3
    assert listed[1].image == str(folder / "b" / "10.jpg") and listed[1].text == ""


def test_rows_are_checked_only_when_asked(image_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "fine"}\n{"image": "missing.png"}\n')
    corpus = Corpus(data)
    raw = list(corpus.raw_rows())  # a resumed run skips finished shards without opening their images
    assert raw == [(1, {"text": "fine"}), (2, {"image": "missing.png"})]
    with pytest.raises(DataError, match="image file not found") as caught:
        corpus.row(*raw[1])
    assert "line 2" in str(caught.value) and "field 'image'" in str(caught.value)


def test_bad_inputs_name_the_file_and_row(tmp_path: Path) -> None:
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["ok", "", "fine"]}), parquet)
    with pytest.raises(DataError, match="row 2") as caught:
        list(Corpus(parquet).rows())
    assert str(parquet) in str(caught.value)
    pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "other.parquet")
    with pytest.raises(DataError, match="none of the columns text, image, video"):
        list(Corpus(tmp_path / "other.parquet").raw_rows())
    (tmp_path / "rows.csv").write_text("text\nx\n")
    with pytest.raises(DataError, match=r"\.jsonl or \.parquet"):
        Corpus(tmp_path / "rows.csv")
    with pytest.raises(DataError, match="no such file"):
        Corpus(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_rows(tmp_path / "empty.jsonl")
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8") as caught:
        read_rows(tmp_path / "latin.jsonl")
    assert caught.value.line == 2 and "line 2" in str(caught.value)


def test_row_count_agrees_with_the_rows_read_whatever_the_line_endings(tmp_path: Path) -> None:
    data = tmp_path / "cr.jsonl"
    data.write_bytes(b'{"text": "a"}\r{"text": "b"}\r\n\xc2\xa0\n{"text": "c"}\r')
    corpus = Corpus(data)
    assert len(corpus) == len(list(corpus.raw_rows())) == 3


def test_a_folder_is_described_by_its_files(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    before = Corpus(tmp_path).describe()
    (tmp_path / "b.png").unlink()
    Image.new("RGB", (8, 8)).save(tmp_path / "c.png")
    after = Corpus(tmp_path).describe()
    assert before["rows"] == after["rows"] == 2 and before["listing_sha256"] != after["listing_sha256"]
