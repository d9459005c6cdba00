"""Fuzzing video inputs: a video file cut or corrupted anywhere, or a frame folder of any frame sizes
and junk, is embedded or refused with a :class:`DataError` naming it, never another exception, in
the checks every entry point runs (``video_problem``) and when it is decoded (``Embedder.encode``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cocoa.core.errors import DataError
from cocoa.data.videos import video_problem
from cocoa.inference.embedder import Embedder

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def embed_or_refuse(embedder: Embedder, source: Path) -> None:
    """The property: refused by the shared check or when decoded, with the source named; or embedded."""
    if (problem := video_problem(str(source))) is not None:
        assert str(source) in problem or source.name in problem, problem
        return
    try:
        vectors = embedder.encode({"text": "what happens?", "video": source})
    except DataError as exc:
        assert str(source) in str(exc), exc
    else:
        assert vectors.shape == (1, embedder.dim) and np.isfinite(vectors).all()


def fresh(tmp_path: Path, data: bytes, suffix: str) -> Path:
    """A new path per example (the fixture's folder is shared by all of them)."""
    path = tmp_path / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    path.write_bytes(data)
    return path


@FUZZ
@given(keep=st.integers(1, 1000), flips=st.lists(st.tuples(st.integers(0, 999), st.integers(1, 255)), max_size=6))
def test_a_video_file_cut_or_corrupted_anywhere(embedder: Embedder, video_dir: Path, tmp_path: Path, keep: int,
                                                 flips: list[tuple[int, int]]) -> None:
    """``keep`` per mille of the file's bytes (a cut file), with bytes at per-mille positions flipped."""
    data = bytearray((video_dir / "clip.mp4").read_bytes())
    data = data[:max(1, len(data) * keep // 1000)]
    for where, mask in flips:
        data[len(data) * where // 1000] ^= mask
    embed_or_refuse(embedder, fresh(tmp_path, bytes(data), ".mp4"))


frames = st.one_of(st.tuples(st.integers(1, 300), st.integers(1, 300)), st.binary(max_size=40))


@FUZZ
@given(contents=st.lists(frames, min_size=0, max_size=4))
def test_a_frame_folder_of_any_sizes_and_junk(embedder: Embedder, tmp_path: Path,
                                              contents: list[tuple[int, int] | bytes]) -> None:
    folder = tmp_path / hashlib.sha256(repr(contents).encode()).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    for i, frame in enumerate(contents):
        path = folder / f"frame_{i + 1}.png"
        if isinstance(frame, bytes):
            path.write_bytes(frame)
        else:
            Image.new("RGB", frame, (i * 40 % 256, 90, 200)).save(path)
    embed_or_refuse(embedder, folder)
