"""Stored scores and cached embeddings are never reused for another model config, data folder or image."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cocoa.evaluate.freshness import FileHashes
from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import build_benchmark


def run(model: Path, data: Path, out: Path):
    return evaluate(BatchEncoder.from_pretrained(model, device="cpu"), data, out, show_progress=False)


def test_a_changed_model_config_is_evaluated_again(model_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    data, out = build_benchmark(tmp_path / "data"), tmp_path / "out"
    first = run(model_dir, data, out)
    assert sorted(run(model_dir, data, out).resumed) == sorted(first.evaluated)
    changed = tmp_path / "changed-model"
    shutil.copytree(model_dir, changed)
    config = json.loads((changed / "config.json").read_text())
    config["text_config"]["rms_norm_eps"] = 0.5
    (changed / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING):
        again = run(changed, data, out)
    assert again.resumed == [] and again.encoded == first.encoded, "nothing resumed, nothing from the cache"
    assert "another model, preprocessing or protocol" in caplog.text


def test_another_data_folder_with_the_same_names_is_evaluated_again(model_dir: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    first = run(model_dir, build_benchmark(tmp_path / "one"), out)
    other = build_benchmark(tmp_path / "two")
    (other / "eval" / "Beta.parquet").write_bytes((other / "eval" / "Gamma.parquet").read_bytes())
    with caplog.at_level(logging.WARNING):
        again = run(model_dir, other, out)
    assert again.evaluated == ["Beta"] and sorted(again.resumed) == ["Alpha", "Gamma"]
    assert "Beta: evaluating again: its data changed" in caplog.text
    assert json.loads((out / "Beta_score.json").read_text())["n_queries"] == 1, "Gamma's one row, not Beta's two"
    assert first.datasets["Beta"].meta_task == again.datasets["Beta"].meta_task


def test_an_image_replaced_at_the_same_path_is_encoded_again_and_a_touch_is_not(model_dir: Path,
                                                                                 tmp_path: Path) -> None:
    data, out = build_benchmark(tmp_path / "data"), tmp_path / "out"
    run(model_dir, data, out)
    image = data / "images" / "a.png"
    os.utime(image, ns=(1, 1))  # same bytes, another time: hashed again, found equal
    touched = run(model_dir, data, out)
    assert touched.encoded == 0 and touched.evaluated == []
    Image.new("RGB", (8, 8), (0, 200, 0)).save(image)
    replaced = run(model_dir, data, out)
    assert sorted(replaced.evaluated) == ["Alpha", "Gamma"], "the datasets that name a.png"
    assert replaced.encoded == 2, "the query and the candidate holding a.png, nothing else"


def test_file_hashes_reuse_size_times_and_inode_and_survive_a_bad_file(tmp_path: Path) -> None:
    file = tmp_path / "f.bin"
    file.write_bytes(b"abc")
    hashes = FileHashes(tmp_path / "hashes.json")
    digest = hashes.sha(file)
    hashes.save()
    reloaded = FileHashes(tmp_path / "hashes.json")
    known = json.loads((tmp_path / "hashes.json").read_text())
    known[str(file)][4] = "cached"  # proves the stored value is used while size, times and inode match
    (tmp_path / "hashes.json").write_text(json.dumps(known))
    assert FileHashes(tmp_path / "hashes.json").sha(file) == "cached" and reloaded.sha(file) == digest
    (tmp_path / "hashes.json").write_text("{broken")
    assert FileHashes(tmp_path / "hashes.json").sha(file) == digest


def test_a_file_replaced_with_the_same_size_and_mtime_is_hashed_again(tmp_path) -> None:
    import os

    from cocoa.evaluate.freshness import FileHashes

    path = tmp_path / "a.bin"
    path.write_bytes(b"first")
    hashes = FileHashes(tmp_path / "hashes.json")
    before, stat = hashes.sha(path), path.stat()
    hashes.save()
    path.write_bytes(b"other")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime restored
    assert FileHashes(tmp_path / "hashes.json").sha(path) != before
