"""Opening images with errors that name the file, and guards against huge images."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image

from cocoa.errors import DataError

#: The one pixel cap: images with more pixels are refused everywhere (decompression-bomb guard);
#: the server may be given a lower one.
MAX_IMAGE_PIXELS = 64_000_000


class ImageTooLarge(DataError):
    """An image over the pixel cap."""


def open_image(source: str | Path | Image.Image | bytes, *, max_pixels: int = MAX_IMAGE_PIXELS,
               row: int | None = None, field: str | None = None) -> Image.Image:
    """Open ``source`` (a path, a PIL image or encoded bytes) as an RGB image, or raise :class:`DataError` naming it."""
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
                    probe.load()
                    image = probe.copy()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"image is too large ({exc})", row=row, field=field) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"bytes are not a readable image ({exc})", row=row, field=field) from exc
    else:
        name = str(source)
        path = Path(source)
        if not path.is_file():
            raise DataError("image file not found", file=name, row=row, field=field)
        try:
            with Image.open(path) as probe:
                _check_pixels(probe.size, max_pixels, name, row, field)
                probe.load()
                image = probe.copy()
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot read image: {exc}", file=name, row=row, field=field) from exc
    _check_pixels(image.size, max_pixels, name, row, field)
    width, height = image.size
    if width < 1 or height < 1:
        raise DataError("image is empty", file=name, row=row, field=field)
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str | None, row: int | None,
                  field: str | None) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
                            file=name, row=row, field=field)


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
