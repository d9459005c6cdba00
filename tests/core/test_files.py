"""Atomic writes: a failure leaves the old file or folder as it was and no temp beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cocoa.core.files import atomic_folder, atomic_path, write_json, write_npy, write_text


def test_a_failed_file_write_keeps_the_old_content_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
    with atomic_path(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    with atomic_folder(folder) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_folder(folder) as tmp:
        (tmp / "weights").write_text("v2, half")
        raise RuntimeError("crash mid-save")
    assert (folder / "weights").read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["model"]
    with atomic_folder(folder) as tmp:
        (tmp / "other").write_text("v3")
    assert sorted(p.name for p in folder.iterdir()) == ["other"] and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_json_and_npy_round_trip(tmp_path: Path) -> None:
    write_json(tmp_path / "a" / "x.json", {"k": [1, 2]})
    write_npy(tmp_path / "v.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert (tmp_path / "a" / "x.json").read_text() == '{\n  "k": [\n    1,\n    2\n  ]\n}\n'
    assert np.load(tmp_path / "v.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
