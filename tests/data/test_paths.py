"""Media paths a row names stay inside their root: evaluation, MMEB-V2 frames and `cocoa encode` alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cocoa.core.errors import DataError
from cocoa.data.eval_sets import read_eval_dataset
from cocoa.data.paths import outside_problem
from cocoa.data.video_tasks import VIDEO_TASKS, read_video_task
from cocoa.evaluate import evaluate
from cocoa.inference.corpus import read_rows
from tests.helpers import FakeEncoder, video_table, write_eval, write_video_snapshot


@pytest.mark.parametrize(("relative", "inside"), [
    ("a.png", True), ("sub/a.png", True), ("sub/../a.png", False), ("../a.png", False), ("sub/../../a.png", False), ("/etc/passwd", False),
])
def test_the_rule(tmp_path: Path, relative: str, inside: bool) -> None:
    assert (outside_problem(tmp_path / "root", relative) is None) == inside


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    Image.new("RGB", (32, 32), "red").save(tmp_path / "secret.png")
    return tmp_path / "secret.png"


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_an_eval_row_cannot_open_a_file_outside_the_image_root(tmp_path: Path, secret: Path, how: str) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32), "blue").save(data / "images" / "ok.png")
    path = "../../secret.png" if how == "dotdot" else str(secret)
    write_eval(data / "Mine" / "test-00000-of-00001.parquet",
               [("q [1,0]", "ok.png", ["a", "b"], ["", ""]), ("q [0,1]", path, ["a", "b"], ["", ""])])
    with pytest.raises(DataError, match="leads outside") as caught:
        read_eval_dataset(data, "Mine", data / "images")
    assert caught.value.row == 1 and caught.value.field == "qry_img_path" and "--allow-outside-paths" in str(caught.value)
    assert len(read_eval_dataset(data, "Mine", data / "images", skip_bad=True).rows) == 1
    opened = read_eval_dataset(data, "Mine", data / "images", allow_outside_paths=True)
    assert Path(opened.items[opened.queries[1]].image).resolve() == secret.resolve()
    summary = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False)
    assert "leads outside" in summary.failed["Mine"] and "row 2" in summary.failed["Mine"]
    allowed = evaluate(FakeEncoder(), data, tmp_path / "out2", show_progress=False, allow_outside_paths=True)
    assert allowed.failed == {} and "Mine" in {**allowed.datasets, **allowed.extra}


def test_an_encode_row_cannot_open_a_file_outside_its_folder(tmp_path: Path, secret: Path) -> None:
    rows = tmp_path / "in" / "rows.jsonl"
    rows.parent.mkdir()
    rows.write_text(json.dumps({"id": 1, "text": "x"}) + "\n" + json.dumps({"id": 2, "image": "../secret.png"}) + "\n")
    with pytest.raises(DataError, match="leads outside") as caught:
        read_rows(rows)
    assert caught.value.line == 2 and caught.value.field == "image"
    assert read_rows(rows, allow_outside=True)[1].image == str(secret)
    rows.write_text(json.dumps({"id": 1, "video": ["ok.png", "/tmp"]}) + "\n")
    with pytest.raises(DataError, match="leads outside") as caught:
        read_rows(rows)
    assert caught.value.field == "video"


def test_a_video_task_row_cannot_name_frames_outside_its_frame_root(tmp_path: Path) -> None:
    root = write_video_snapshot(tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (28, 28)).save(tmp_path / "elsewhere" / "frame_0001.jpg")
    video_table(root / "K700" / "test-00000-of-00001.parquet",
                {"video_id": ["v1", "../../../../../elsewhere"], "pos_text": ["abseiling", "juggling"]})
    with pytest.raises(DataError, match="leads outside") as caught:
        read_video_task(root / "K700", VIDEO_TASKS["K700"], root)
    assert caught.value.row == 1 and caught.value.field == "video_id"
    assert len(read_video_task(root / "K700", VIDEO_TASKS["K700"], root, allow_outside_paths=True).queries) == 2
