"""Videos as sampled frames: a folder of frames (MMEB-V2's layout), a list of frame files, or a video file.

An item's ``video`` is one of

* a folder path: its image files are the video's frames in natural order (``2.jpg`` before
  ``10.jpg``), as MMEB-V2 ships its videos (pre-extracted JPEG frames, no decoder needed);
* a tuple of image paths: the frames, in that order;
* a video file path (``.mp4``, ``.webm``, ...): decoded with PyAV (FFmpeg inside its wheels).

:func:`read_frames` samples ``frames`` of them uniformly (``numpy.linspace`` over the indices,
first and last included, as VLM2Vec-V2's loaders do), checks the bounds of the
:class:`~cocoa.core.protocol.VideoPolicy` and returns the frames with their times in seconds.
Every error names the file (or folder) and the limit it broke.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cocoa.core import files
from cocoa.core.errors import DataError
from cocoa.data.images import MAX_IMAGE_PIXELS, image_size, open_image, shape_problem
from cocoa.data.items import EveryFrame, VideoSource

if TYPE_CHECKING:
    from cocoa.core.protocol import VideoPolicy

#: Files read as frames inside a frame folder.
FRAME_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
#: Files decoded with PyAV.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif"})


@dataclass(frozen=True)
class Frames:
    """Sampled frames (RGB, one size) and the time of each in seconds."""

    images: list[Image.Image]
    times: list[float]
    source: str


def describe(video: VideoSource) -> str:
    """A short name of ``video`` for errors and logs."""
    if isinstance(video, tuple):
        return f"{video[0]} (+{len(video) - 1} frames)" if video else "<no frames>"
    return str(video)


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: str | Path) -> list[Path]:
    """The frame images of ``folder`` in natural order, or :class:`DataError` naming the folder."""
    path = Path(folder)
    if not path.is_dir():
        raise DataError("video frame folder not found", file=str(folder))
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
                   key=_natural_key)
    if not files:
        raise DataError(f"video frame folder has no frames ({', '.join(sorted(FRAME_SUFFIXES))})", file=str(folder))
    return files


def sample_indices(total: int, count: int) -> list[int]:
    """``count`` indices spread uniformly over ``range(total)``, first and last included, rounded down
    (VLM2Vec-V2's ``np.linspace(0, total - 1, count, dtype=int)``); every index when ``total <= count``."""
    if total < 1 or count < 1:
        raise ValueError(f"need a positive total and count, got {total} and {count}")
    if total <= count:
        return list(range(total))
    return np.linspace(0, total - 1, count, dtype=int).tolist()


def is_video_file(video: VideoSource) -> bool:
    """Whether ``video`` is a file to decode (a folder is frames even when named ``clip.mp4``)."""
    return isinstance(video, str) and Path(video).suffix.lower() in VIDEO_SUFFIXES and not Path(video).is_dir()


def read_frames(video: VideoSource, policy: VideoPolicy) -> Frames:
    """``policy.frames`` frames of ``video``, uniformly sampled, all at the first frame's size.

    A frame's time is its index in the whole video over the video's frame rate (a file's own
    rate; ``policy.fps`` for frame folders and lists, which carry none).
    """
    if is_video_file(video):
        images, times = _decode(str(video), policy.frames)
    else:
        paths = [Path(p) for p in video] if isinstance(video, tuple) else frame_files(video)
        if not paths:
            raise DataError("a video needs at least one frame", file=describe(video))
        indices = list(range(len(paths))) if isinstance(video, EveryFrame) else sample_indices(len(paths),
                                                                                                 policy.frames)
        images = [open_image(paths[i]) for i in indices]
        times = [i / policy.fps for i in indices]
    for image in images:
        check_frame(image.size, policy, describe(video))
    return Frames(images, times, describe(video))


def check_frame(size: tuple[int, int], policy: VideoPolicy, name: str) -> None:
    """:class:`DataError` if a frame of ``size`` is empty, too elongated for the vision tower, or over the
    policy's pixel cap."""
    width, height = size
    if problem := shape_problem(width, height):
        raise DataError(f"video frame: {problem}", file=name)
    if width * height > policy.max_frame_pixels:
        raise DataError(f"video frame is {width}x{height} = {width * height} pixels, over the limit of "
                        f"{policy.max_frame_pixels} per frame", file=name)


def _count_frames(container: Any, stream: Any) -> int:
    """A video stream's frame count: its header's, else a pass over its packets (decoding nothing)."""
    return stream.frames or sum(1 for packet in container.demux(stream) if packet.size)


def _decode(path: str, count: int) -> tuple[list[Image.Image], list[float]]:
    """``count`` uniformly sampled frames of a video file and their times in seconds.

    The frame count comes from the stream header (or a pass over the packets, which decodes
    nothing); the decoding pass keeps only the sampled frames, so memory holds ``count`` frames.
    """
    import av  # PyAV: imported here so that frame folders need no decoder

    if not Path(path).is_file():
        raise DataError("video file not found", file=path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DataError("file has no video stream", file=path)
            stream = container.streams.video[0]
            total = _count_frames(container, stream)
        if total < 1:
            raise DataError("video has no frames", file=path)
        indices = sample_indices(total, count)
        wanted: dict[int, Image.Image] = {}
        with av.open(path) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate) if stream.average_rate else 1.0
            for index, frame in enumerate(container.decode(stream)):
                if index in indices:
                    wanted[index] = frame.to_image().convert("RGB")
                if index >= indices[-1]:
                    break
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode video: {exc}", file=path) from exc
    if not wanted:
        raise DataError("video has no decodable frames", file=path)
    last = max(wanted)  # a header may promise more frames than the file holds
    return [wanted.get(i, wanted[last]) for i in indices], [min(i, last) / rate for i in indices]


def first_frame_size(video: VideoSource) -> tuple[int, int]:
    """``(width, height)`` of a video's first frame, cheaply (image header, or the stream's codec context)."""
    if is_video_file(video):
        import av

        try:
            with av.open(str(video)) as container:
                stream = container.streams.video[0]
                return int(stream.codec_context.width), int(stream.codec_context.height)
        except (av.FFmpegError, OSError, IndexError) as exc:
            raise DataError(f"cannot read video: {exc}", file=str(video)) from exc
    paths = list(video) if isinstance(video, tuple) else frame_files(video)
    if not paths:
        raise DataError("a video needs at least one frame", file=describe(video))
    return image_size(paths[0])


def video_problem(video: VideoSource, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """What makes ``video`` unusable, found cheaply (``None``: nothing): a missing folder, file or frame,
    a first frame that is empty (a corrupt file whose container still opens reads as 0x0) or too
    elongated for the vision tower (as images), or over ``max_pixels``."""
    try:
        width, height = first_frame_size(video)
    except DataError as exc:
        return f"{exc.message}: {exc.file}" if exc.file else exc.message
    if isinstance(video, tuple) and (missing := next((p for p in video if not Path(p).is_file()), None)):
        return f"video frame not found: {missing}"
    if problem := shape_problem(width, height):
        return f"video {describe(video)}: {problem}"
    if width * height > max_pixels:
        return f"video {describe(video)} has {width}x{height} frames, over the limit of {max_pixels} pixels"
    return None


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 4, codec: str = "mpeg4") -> Path:
    """Encode ``frames`` (``(height, width, 3)`` uint8 arrays of one size) into a video file, atomically."""
    import av

    path = Path(path)
    height, width = frames[0].shape[:2]
    with files.atomic_path(path) as tmp, av.open(str(tmp), "w", format=path.suffix.lstrip(".")) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def frame_count(video: VideoSource) -> int:
    """How many frames ``video`` has (a folder listing, a tuple's length, or a file's stream header)."""
    if isinstance(video, tuple):
        return len(video)
    if not is_video_file(video):
        return len(frame_files(video))
    import av

    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            return _count_frames(container, stream)
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise DataError(f"cannot read video: {exc}", file=str(video)) from exc
