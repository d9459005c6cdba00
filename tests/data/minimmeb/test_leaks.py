"""cocoa.data.minimmeb.leaks: no eval image, clip or query in training, and planted leaks found."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cocoa.data.minimmeb.leaks import check_leaks
from cocoa.data.minimmeb.store import TRAIN_SCHEMA


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


def test_no_leaks_in_build_and_planted_leaks_found(mini, tmp_path):
    out, _ = mini
    assert check_leaks(out) == []
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    eval_rows = pq.read_table(copy / "eval" / "FashionMNIST.parquet").to_pylist()
    shutil.copy(copy / "images" / eval_rows[0]["qry_img_path"], copy / "images" / "planted.png")
    t2i_query = pq.read_table(copy / "eval" / "SceneT2I.parquet").to_pylist()[3]["qry_text"]
    train_path = copy / "train" / "FashionMNIST.parquet"
    rows = pq.read_table(train_path).to_pylist()
    rows.append({**rows[0], "qry_image_path": "planted.png"})
    rows.append({**rows[1], "pos_text": t2i_query})
    pq.write_table(pa.Table.from_pylist(rows, schema=TRAIN_SCHEMA), train_path)
    leaks = check_leaks(copy)
    assert any("FashionMNIST.parquet row 0" in leak and "planted.png" in leak for leak in leaks)
    assert any("eval/SceneT2I.parquet row 3: query text" in leak for leak in leaks)
