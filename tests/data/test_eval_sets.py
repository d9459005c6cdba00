"""cocoa.data.eval_sets: MMEB-eval layouts with images and videos, bad rows named or skipped."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocoa.core.errors import DataError
from cocoa.data.eval_sets import list_eval_datasets, read_eval_dataset
from cocoa.data.items import Item
from cocoa.data.minimmeb.store import EVAL_SCHEMA
from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import CLASSIFY_QUERY as IMG
from tests.helpers import frames_of


def _eval_row(qry_img: str = "a.png", texts: tuple = ("cat", "dog"), imgs: tuple = ("", "")) -> dict:
    return {"qry_text": IMG, "qry_img_path": qry_img, "tgt_text": list(texts), "tgt_img_path": list(imgs)}


def _write_eval(path: Path, rows: list[dict], schema: pa.Schema = EVAL_SCHEMA) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_eval_layouts_hf_and_plain(tmp_path, images):
    _write_eval(tmp_path / "hf" / "Toy" / "test-00000-of-00001.parquet", [_eval_row(), _eval_row("b.png")])
    _write_eval(tmp_path / "plain" / "Other.parquet", [_eval_row()])
    assert list_eval_datasets(tmp_path / "hf") == ["Toy"]
    assert list_eval_datasets(tmp_path / "plain") == ["Other"]
    dataset = read_eval_dataset(tmp_path / "hf", "Toy", images)
    assert dataset.name == "Toy" and len(dataset.rows) == 2 and dataset.skipped == 0
    assert dataset.rows[1].query.image == str((images / "b.png").absolute())
    assert dataset.rows[0].query.text == IMG
    assert [c.text for c in dataset.rows[0].candidates] == ["cat", "dog"]
    assert dataset.rows[0].candidates[0].image is None
    assert read_eval_dataset(tmp_path / "plain" / "Other.parquet", None, images).name == "Other"


@pytest.mark.parametrize(("row", "field", "words"), [
    (_eval_row("missing.png"), "qry_img_path", "not found"),
    (_eval_row("corrupt.png"), "qry_img_path", "cannot read image"),
    (_eval_row("huge.png"), "qry_img_path", "over the limit"),
    (_eval_row("thin.png"), "qry_img_path", "aspect ratio over 200:1"),
    (_eval_row(imgs=("", "thin.png")), "tgt_img_path[1]", "aspect ratio over 200:1"),
    (_eval_row(imgs=("", "missing.png")), "tgt_img_path[1]", "not found"),
    (_eval_row(texts=("cat", "")), "tgt_text[1]", "neither text nor image"),
    ({**_eval_row(), "qry_text": "", "qry_img_path": ""}, "qry_text", "neither text nor image"),
    (_eval_row(texts=("cat", "dog"), imgs=("",)), "tgt_img_path", "entries"),
])
def test_bad_eval_row_names_file_row_field(tmp_path, images, row, field, words):
    path = _write_eval(tmp_path / "Bad.parquet", [_eval_row(), row])
    with pytest.raises(DataError, match=words) as caught:
        read_eval_dataset(path, None, images, max_pixels=64_000_000)
    assert (caught.value.file, caught.value.row, caught.value.field) == (str(path), 1, field)


def test_bad_eval_schema_names_field(tmp_path, images):
    missing = pa.schema([f for f in EVAL_SCHEMA if f.name != "tgt_img_path"])
    path = _write_eval(tmp_path / "Missing.parquet", [{"qry_text": IMG, "qry_img_path": "a.png",
                                                      "tgt_text": ["cat"]}], missing)
    with pytest.raises(DataError, match="missing field") as caught:
        read_eval_dataset(path, None, images)
    assert (caught.value.file, caught.value.field) == (str(path), "tgt_img_path")
    extra = EVAL_SCHEMA.append(pa.field("label", pa.string()))
    path = _write_eval(tmp_path / "Extra.parquet", [{**_eval_row(), "label": "x"}], extra)
    with pytest.raises(DataError, match="unknown field") as caught:
        read_eval_dataset(path, None, images)
    assert caught.value.field == "label"


def test_skip_bad_counts_skipped_rows(tmp_path, images):
    rows = [_eval_row(), _eval_row("missing.png"), _eval_row(texts=("a",), imgs=("", "")), _eval_row("b.png"),
            _eval_row("thin.png")]
    path = _write_eval(tmp_path / "Mixed.parquet", rows)
    dataset = read_eval_dataset(path, None, images, skip_bad=True)
    assert dataset.skipped == 3
    assert [row.query.image for row in dataset.rows] == [str((images / n).absolute()) for n in ("a.png", "b.png")]


def test_check_images_off_skips_opening(tmp_path, images):
    path = _write_eval(tmp_path / "Lazy.parquet", [_eval_row("missing.png")])
    assert len(read_eval_dataset(path, None, images, check_images=False).rows) == 1


def test_eval_items_are_indexed_once_in_order_of_first_appearance(tmp_path, images):
    rows = [_eval_row("a.png", texts=("cat", "dog", "cat"), imgs=("", "b.png", "")),
            _eval_row("./a.png", texts=("dog", "cat"), imgs=("b.png", "a.png")),
            {**_eval_row(), "qry_text": None, "qry_img_path": "b.png", "tgt_text": ["dog"], "tgt_img_path": [None]}]
    path = tmp_path / "Dup.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=EVAL_SCHEMA), path, row_group_size=1,
                   use_compliant_nested_type=False)
    dataset = read_eval_dataset(path, None, images)
    a, b = (str((images / name).absolute()) for name in ("a.png", "b.png"))
    assert [item.key() for item in dataset.items] == [
        (IMG, a), ("", b), ("cat", ""), ("dog", b), ("cat", a), ("dog", "")]
    assert dataset.queries.tolist() == [0, 0, 1]
    assert dataset.candidates.tolist() == [[2, 3, 2], [3, 4, -1], [5, -1, -1]]
    assert [len(row.candidates) for row in dataset.rows] == [3, 2, 1]
    assert dataset.rows[1].candidates[1].image == a and dataset.rows[2].query.text == ""


def test_bad_candidate_lists_name_row_and_field(tmp_path, images):
    rows = [_eval_row(), {**_eval_row(), "tgt_text": None}, _eval_row(texts=(), imgs=()),
            _eval_row(texts=("cat", "", ""), imgs=("", "", "missing.png")),
            _eval_row(texts=("cat", "dog"), imgs=("", "missing.png"))]
    path = _write_eval(tmp_path / "Lists.parquet", rows)
    expected = [(1, "tgt_text", "candidates must be lists"), (2, "tgt_text", "no candidates"),
                (3, "tgt_text[1]", "neither text nor image"), (4, "tgt_img_path[1]", "not found")]
    for row, field, words in expected:
        kept = [rows[0], *rows[row:]]
        with pytest.raises(DataError, match=words) as caught:
            read_eval_dataset(_write_eval(tmp_path / f"Part{row}.parquet", kept), None, images)
        assert (caught.value.row, caught.value.field) == (1, field)
    dataset = read_eval_dataset(path, None, images, skip_bad=True)
    assert dataset.skipped == 4 and len(dataset.rows) == 1
    flat = pa.schema([f if f.name != "tgt_img_path" else pa.field("tgt_img_path", pa.string()) for f in EVAL_SCHEMA])
    path = _write_eval(tmp_path / "Flat.parquet", [{**_eval_row(), "tgt_img_path": "a.png"}], flat)
    with pytest.raises(DataError, match="must be lists") as caught:
        read_eval_dataset(path, None, images)
    assert (caught.value.row, caught.value.field) == (0, "tgt_text")


def test_eval_errors_name_the_file_and_its_own_row(tmp_path, images):
    folder = tmp_path / "hf" / "Toy"
    _write_eval(folder / "test-00000-of-00002.parquet", [_eval_row(), _eval_row("missing.png")])
    second = _write_eval(folder / "test-00001-of-00002.parquet", [_eval_row("b.png"), _eval_row("corrupt.png")])
    with pytest.raises(DataError) as caught:
        read_eval_dataset(tmp_path / "hf", "Toy", images)
    assert (caught.value.row, caught.value.field) == (1, "qry_img_path")
    assert caught.value.file.endswith("test-00000-of-00002.parquet")
    dataset = read_eval_dataset(tmp_path / "hf", "Toy", images, skip_bad=True)
    assert dataset.skipped == 2 and dataset.queries.tolist() == [0, 1]
    assert dataset.items[1].image == str((images / "b.png").absolute())
    with pytest.raises(DataError, match="cannot read image") as caught:
        read_eval_dataset(second, None, images)
    assert (caught.value.file, caught.value.row) == (str(second), 1)


def test_the_folder_lists_the_tasks_and_not_the_frames(snapshot: Path) -> None:
    names = list_eval_datasets(snapshot)
    assert {"K700", "MSR-VTT", "NExTQA", "MVBench", "MomentSeeker"} <= set(names) and "video-tasks" not in names


def test_eval_reader_takes_the_video_sets(mini_dir: Path) -> None:
    event = read_eval_dataset(mini_dir, "Grid3x3VideoEvent", mini_dir / "images")
    assert event.rows[0].query.video.endswith(".mp4") and Path(event.rows[0].query.video).is_file()
    moment = read_eval_dataset(mini_dir, "VideoMoment", mini_dir / "images")
    assert all(len(row.candidates) == 4 for row in moment.rows)
    assert len(frames_of(mini_dir / "images", str(Path(moment.rows[0].query.video).relative_to(
        mini_dir / "images")))) == 16


def test_mmeb_eval_rows_with_video_columns(model_dir: Path, video_dir: Path, tmp_path: Path) -> None:
    """Rows in MMEB-eval columns plus qry_video_path / tgt_video_path: read, checked, evaluated."""
    rows = {"qry_text": ["<|video_1|> What happens?", "a noise clip"],
            "qry_img_path": ["", ""], "qry_video_path": ["clip", ""],
            "tgt_text": [["noise moving", "a still"], ["", "<|video_1|> a video"]],
            "tgt_img_path": [["", ""], ["", ""]], "tgt_video_path": [["", ""], ["clip.mp4", "long"]]}
    data = tmp_path / "data"
    (data / "VideoSet").mkdir(parents=True)
    pq.write_table(pa.table(rows), data / "VideoSet" / "test-00000-of-00001.parquet")
    dataset = read_eval_dataset(data, "VideoSet", video_dir)
    first, second = dataset.rows
    assert first.query == Item("<|video_1|> What happens?", video=str(video_dir / "clip"))
    assert [c.video for c in second.candidates] == [str(video_dir / "clip.mp4"), str(video_dir / "long")]
    summary = evaluate(BatchEncoder.from_pretrained(model_dir, device="cpu"), data, tmp_path / "out",
                       image_root=video_dir, show_progress=False)
    assert set(summary.datasets) == {"VideoSet"}
    bad = {**rows, "tgt_video_path": [["", ""], ["gone", "long"]]}
    pq.write_table(pa.table(bad), data / "VideoSet" / "test-00000-of-00001.parquet")
    with pytest.raises(DataError, match="video frame folder not found") as caught:
        read_eval_dataset(data, "VideoSet", video_dir)
    assert caught.value.row == 1 and caught.value.field == "tgt_video_path[0]"
    assert len(read_eval_dataset(data, "VideoSet", video_dir, skip_bad=True).rows) == 1
