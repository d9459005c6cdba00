"""Opening images with errors that name the file, and guards against huge images."""

from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path

from PIL import Image

from cocoa.core.errors import DataError

#: The one pixel cap: images with more pixels are refused everywhere (decompression-bomb guard);
#: the server may be given a lower one.
MAX_IMAGE_PIXELS = 64_000_000
#: The widest aspect ratio the Qwen2-VL image processors accept (``smart_resize`` raises past it);
#: refused everywhere, so readers, the evaluator and the server agree.
MAX_ASPECT_RATIO = 200


class ImageTooLarge(DataError):
    """An image over the pixel cap."""


def _loaded(probe: Image.Image, keep_pixels: int | None) -> Image.Image:
    """``probe`` decoded: at full size, or, when it has more than ``keep_pixels``, at a reduced scale as early
    as the decoder allows (a JPEG's DCT scaling via ``draft``, then an integer ``reduce``), so a large
    image never stays in memory at full size."""
    width, height = probe.size
    if keep_pixels is None or width * height <= keep_pixels:
        probe.load()
        return probe.copy()
    scale = math.sqrt(keep_pixels / (width * height))
    target = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
    probe.draft("RGB", target)  # JPEG only: decode at 1/2, 1/4 or 1/8 scale, no smaller than target
    probe.load()
    factor = min(probe.width // target[0], probe.height // target[1])
    if factor < 2:
        return probe.copy()
    # reduce takes 8-bit L, RGB and RGBA (and a few more): palette, 1-bit and 16-bit images are converted first
    image = probe if probe.mode in ("L", "RGB", "RGBA") else probe.convert(
        "RGBA" if "transparency" in probe.info or probe.mode in ("LA", "PA") else "RGB")
    return image.reduce(factor)


def open_image(source: str | Path | Image.Image | bytes, *, max_pixels: int = MAX_IMAGE_PIXELS,
               row: int | None = None, field: str | None = None, keep_pixels: int | None = None) -> Image.Image:
    """Open ``source`` (a path, a PIL image or encoded bytes) as an RGB image, or raise :class:`DataError` naming it.

    ``keep_pixels``: an image with more pixels is decoded at a reduced scale, to between that many and
    about four times as many (:func:`_loaded`); ``None`` keeps every image at full size.
    """
    if isinstance(source, Image.Image):
        image = source
        name = "<in-memory image>"
    elif isinstance(source, bytes):
        name = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(source)) as probe:
                    _check_pixels(probe.size, max_pixels, name, row, field)
                    image = _loaded(probe, keep_pixels)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"image is too large ({exc})", row=row, field=field) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            reason = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc)).strip()
            raise DataError(f"bytes are not a readable image ({reason})", row=row, field=field) from exc
    else:
        name = str(source)
        path = Path(source)
        if not path.is_file():
            raise DataError("image file not found", file=name, row=row, field=field)
        try:
            with Image.open(path) as probe:
                _check_pixels(probe.size, max_pixels, name, row, field)
                image = _loaded(probe, keep_pixels)
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot read image: {exc}", file=name, row=row, field=field) from exc
    if keep_pixels is None or isinstance(source, Image.Image):  # a decoded image was checked at its header
        _check_pixels(image.size, max_pixels, name, row, field)
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str | None, row: int | None,
                  field: str | None) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
                            file=name, row=row, field=field)
    if problem := shape_problem(width, height):
        raise DataError(problem, file=name, row=row, field=field)


def shape_problem(width: int, height: int) -> str | None:
    """What makes a ``width`` x ``height`` image unusable by the vision tower (``None``: nothing)."""
    if width < 1 or height < 1:
        return "image is empty"
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return (f"image is {width}x{height}, an aspect ratio over {MAX_ASPECT_RATIO}:1, which the Qwen2-VL "
                "image processor refuses")
    return None


def image_size(source: str | Path | Image.Image) -> tuple[int, int]:
    """``(width, height)`` read from the file header only, or :class:`DataError` naming the file."""
    if isinstance(source, Image.Image):
        return source.size
    if not Path(source).is_file():
        raise DataError("image file not found", file=str(source))
    try:
        with Image.open(source) as probe:
            return probe.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image: {exc}", file=str(source)) from exc


def image_file_problem(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """What makes the image file at ``path`` unusable, read from its header (``None``: nothing)."""
    if not Path(path).is_file():
        return f"image file not found: {path}"
    try:
        with Image.open(path) as probe:
            width, height = probe.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot read image {path}: {exc}"
    if width * height > max_pixels:
        return f"image {path} is {width}x{height} pixels, over the limit of {max_pixels}"
    problem = shape_problem(width, height)
    return f"{problem}: {path}" if problem else None
