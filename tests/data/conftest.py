"""Fixtures of the data tests: a folder of good and bad images, an MMEB-V2 video snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import write_video_snapshot


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    for name, color in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (56, 56), color).save(root / name)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.new("1", (8200, 8200)).save(root / "huge.png")
    Image.new("RGB", (402, 2)).save(root / "thin.png")
    return root


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video_snapshot(tmp_path_factory.mktemp("mmeb-v2"))
