"""MiniMMEB video sets: clips, their reverses, answers that need time, and the leak check over frames."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cocoa.data.eval_sets import read_eval_dataset
from cocoa.data.minimmeb.leaks import check_leaks
from cocoa.data.minimmeb.videos import Clip

MOTION_SETS = ("VideoEvent", "VideoT2V", "VideoV2T", "VideoQA", "Grid3x3VideoEvent", "Grid3x3VideoT2V")


def frames_of(images: Path, video: str) -> list[str]:
    folder = images / video.removesuffix(".mp4")
    return [hashlib.sha256(Image.open(f).convert("RGB").tobytes()).hexdigest()
            for f in sorted(folder.iterdir(), key=lambda p: int(p.stem.split("_")[1]))]


def test_a_clip_and_its_reverse() -> None:
    clip = Clip("move", 2, "eval", 0, "dress", (0, 1), ("red", "red"))
    assert clip.caption() == "a red dress moves from the top-left to the top-right."
    assert clip.reverse().caption() == "a red dress moves from the top-right to the top-left."
    assert (clip.event(), clip.reverse().event()) == ("an item moves right", "an item moves left")
    assert clip.reverse().reverse() == clip
    appear = Clip("appear", 3, "eval", 0, "bag", (4, 4), ("blue", "blue"))
    assert appear.caption() == "a blue bag appears in the middle-center."
    assert appear.reverse().caption() == "a blue bag disappears from the middle-center."
    recolour = Clip("recolour", 2, "eval", 0, "coat", (3, 3), ("red", "green"))
    assert recolour.reverse().caption() == "a coat in the bottom-right turns from green to red."


def test_every_motion_query_keeps_its_reverse_among_the_candidates(mini_dir: Path) -> None:
    """No frame, nor the set of frames, tells the gold from the reverse: both are always candidates."""
    images = mini_dir / "images"
    checked = 0
    for name in MOTION_SETS:
        rows = pq.read_table(mini_dir / "eval" / f"{name}.parquet").to_pylist()
        assert rows, name
        for row in rows:
            if row["qry_video_path"]:
                clip = frames_of(images, row["qry_video_path"])
                assert len(set(clip)) == 2 and len(clip) == 8  # a before and an after state
            if name.endswith("T2V"):
                gold, reverse = row["tgt_video_path"][:2]
                a, b = frames_of(images, gold), frames_of(images, reverse)
                assert a != b and sorted(a) == sorted(b), (name, gold)
                checked += 1
            elif name.endswith("V2T"):
                assert row["tgt_text"][1] != row["tgt_text"][0] and len(row["tgt_text"]) == len(set(row["tgt_text"]))
    assert checked >= 2 * 12


def test_eval_reader_takes_the_video_sets(mini_dir: Path) -> None:
    event = read_eval_dataset(mini_dir, "Grid3x3VideoEvent", mini_dir / "images")
    assert event.rows[0].query.video.endswith(".mp4") and Path(event.rows[0].query.video).is_file()
    moment = read_eval_dataset(mini_dir, "VideoMoment", mini_dir / "images")
    assert all(len(row.candidates) == 4 for row in moment.rows)
    assert len(frames_of(mini_dir / "images", str(Path(moment.rows[0].query.video).relative_to(
        mini_dir / "images")))) == 16


def test_the_leak_check_finds_an_eval_clip_in_training(mini_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "mini"
    shutil.copytree(mini_dir, copy)
    assert check_leaks(copy) == []
    row = pq.read_table(copy / "eval" / "VideoEvent.parquet").to_pylist()[0]
    leaked = copy / "images" / "videos" / "planted"
    shutil.copytree(copy / "images" / row["qry_video_path"], leaked)
    train = pq.read_table(copy / "train" / "VideoQA.parquet")
    videos = train.column("qry_video_path").to_pylist()
    train = train.set_column(train.column_names.index("qry_video_path"), "qry_video_path",
                             pa.array(["videos/planted", *videos[1:]]))
    pq.write_table(train, copy / "train" / "VideoQA.parquet")
    leaks = check_leaks(copy)
    assert any("VideoEvent.parquet row 0" in leak and "videos/planted" in leak for leak in leaks)
    blank = np.asarray(Image.new("RGB", (112, 112), "white"))
    assert not any(hashlib.sha256(blank.tobytes()).hexdigest() in leak for leak in leaks)
