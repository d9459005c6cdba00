"""cocoa.data.videos: frame sampling as VLM2Vec-V2 samples, the three sources, bad and broken videos named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cocoa.core.errors import ConfigError, DataError
from cocoa.core.protocol import MAX_VIDEO_FRAMES, VideoPolicy
from cocoa.data import videos
from cocoa.data.collate import Preprocessor
from cocoa.data.items import EveryFrame, Item
from cocoa.data.videos import frame_files, read_frames, sample_indices, video_problem
from cocoa.model.backbone import Backbone


@pytest.mark.parametrize(("total", "want"), [
    (64, [0, 9, 18, 27, 36, 45, 54, 63]),  # VLM2Vec-V2's np.linspace(..., dtype=int): rounded down
    (10, [0, 1, 2, 3, 5, 6, 7, 9]),
    (16, [0, 2, 4, 6, 8, 10, 12, 15]),
    (5, [0, 1, 2, 3, 4]),  # fewer frames than asked: all of them, none repeated
])
def test_uniform_sampling_matches_the_reference(total: int, want: list[int]) -> None:
    assert sample_indices(total, 8) == want


def test_frame_folders_are_read_in_natural_order(tmp_path: Path) -> None:
    for name in ("frame_10.jpg", "frame_2.jpg", "frame_1.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in frame_files(tmp_path)] == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg"]


def test_every_frame_reads_the_whole_folder_under_its_own_key(tmp_path: Path) -> None:
    for i in range(12):
        Image.new("RGB", (28, 28), (i * 20, 0, 0)).save(tmp_path / f"frame_{i + 1:04d}.jpg")
    policy = VideoPolicy(frames=8)
    sampled, whole = read_frames(str(tmp_path), policy), read_frames(EveryFrame(str(tmp_path)), policy)
    assert len(sampled.images) == 8 and len(whole.images) == 12
    assert [round(im.getpixel((0, 0))[0] / 20) for im in whole.images] == list(range(12))  # JPEG: about i * 20
    assert Item("v", video=EveryFrame(str(tmp_path))).key() != Item("v", video=str(tmp_path)).key()


def test_elongated_or_empty_frames_are_errors_everywhere_videos_are_checked(
        tiny_backbone: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    thin = tmp_path / "thin"
    thin.mkdir()
    for i in range(2):
        Image.new("RGB", (600, 2)).save(thin / f"frame_{i}.png")  # 300:1, as an image the processor refuses
    assert "aspect ratio over 200:1" in video_problem(str(thin))
    with pytest.raises(DataError, match="aspect ratio over 200:1") as info:
        read_frames(str(thin), VideoPolicy())
    assert str(thin) in str(info.value)
    with pytest.raises(DataError, match="aspect ratio over 200:1"):
        Preprocessor(tiny_backbone).item(Item("x", video=str(thin)))
    # a corrupt mp4 whose container still opens reports 0x0 frames
    monkeypatch.setattr(videos, "first_frame_size", lambda video: (0, 0))
    assert video_problem(str(tmp_path / "corrupt.mp4")) == f"video {tmp_path / 'corrupt.mp4'}: image is empty"


def test_folder_list_and_file_sources(video_dir: Path) -> None:
    policy = VideoPolicy(frames=4, fps=2.0)
    folder = read_frames(str(video_dir / "long"), policy)
    files = frame_files(video_dir / "long")
    listed = read_frames(tuple(str(p) for p in files), policy)
    assert folder.times == listed.times == [0.0, 1.5, 3.5, 5.5]  # indices 0, 3, 7, 11 at 2 fps
    for a, b in zip(folder.images, listed.images, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(np.asarray(folder.images[1]), np.asarray(Image.open(files[3]).convert("RGB")))
    decoded = read_frames(str(video_dir / "clip.mp4"), policy)
    assert len(decoded.images) == 4 and decoded.images[0].size == (64, 48)
    assert decoded.times == [0.0, 0.75, 1.75, 2.75]  # indices 0, 3, 7, 11 at the file's own 4 fps
    assert len(read_frames(str(video_dir / "clip"), policy).images) == 4


def test_bounds_and_broken_videos_are_errors_naming_the_file(tiny_backbone: Backbone, video_dir: Path,
                                                             tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"over the limit of {MAX_VIDEO_FRAMES}"):
        VideoPolicy(frames=MAX_VIDEO_FRAMES + 1)
    with pytest.raises(ConfigError, match="fps must be a positive number"):
        VideoPolicy(fps=0)
    base = Preprocessor(tiny_backbone).protocol
    few = Preprocessor(tiny_backbone, 4096, base.replace(video={"max_tokens": 10}))
    with pytest.raises(DataError, match="over the video policy's max_tokens=10") as info:
        few.item(Item("x", video=str(video_dir / "long")))
    assert str(video_dir / "long") in str(info.value)
    small = Preprocessor(tiny_backbone, 4096, base.replace(video={"max_frame_pixels": 1000}))
    with pytest.raises(DataError, match="over the limit of 1000 per frame"):
        small.item(Item("x", video=str(video_dir / "clip.mp4")))
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    pre = Preprocessor(tiny_backbone)
    for source, message in ((tmp_path / "missing", "video frame folder not found"),
                            (tmp_path / "empty", "has no frames"), (tmp_path / "broken.mp4", "cannot")):
        with pytest.raises(DataError, match=message) as info:
            pre.item(Item("x", None, str(source)))
        assert str(source) in str(info.value)
        assert video_problem(str(source)) is not None
    assert video_problem((str(video_dir / "clip" / "frame_1.png"), str(tmp_path / "gone.png"))) == \
        f"video frame not found: {tmp_path / 'gone.png'}"
    assert video_problem(str(video_dir / "clip.mp4")) is None and os.path.isdir(video_dir / "clip")
