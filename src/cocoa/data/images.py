"""Opening images with errors that name the file, and guards against huge images."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cocoa.errors import DataError

#: Images with more pixels than this are refused (decompression-bomb guard).
MAX_IMAGE_PIXELS = 64_000_000


def open_image(source: str | Path | Image.Image, *, max_pixels: int = MAX_IMAGE_PIXELS,
               row: int | None = None, field: str | None = None) -> Image.Image:
    """Open ``source`` as an RGB image, or raise :class:`DataError` naming it."""
    if isinstance(source, Image.Image):
        image = source
        name = "<in-memory image>"
    else:
        name = str(source)
        path = Path(source)
        if not path.is_file():
            raise DataError("image file not found", file=name, row=row, field=field)
        try:
            with Image.open(path) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    raise DataError(
                        f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
                        file=name, row=row, field=field)
                probe.load()
                image = probe.copy()
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot read image: {exc}", file=name, row=row, field=field) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise DataError(f"image is {width}x{height}, over the limit of {max_pixels} pixels",
                        file=name, row=row, field=field)
    if width < 1 or height < 1:
        raise DataError("image is empty", file=name, row=row, field=field)
    return image if image.mode == "RGB" else image.convert("RGB")


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
