"""Image-caption corpora for the reconstruction stages (``image_path``, ``caption``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cocoa.data.images import MAX_IMAGE_PIXELS
from cocoa.data.items import Item
from cocoa.data.rows import (
    ImageChecker,
    read_rows,
    validated,
)
from cocoa.errors import DataError

CAPTION_FIELDS = ("image_path", "caption")


@dataclass(frozen=True)
class CaptionPair:
    """One stage-1 pre-training example: an image-only item and its caption."""

    image: Item
    caption: str


class CaptionCorpus(list[CaptionPair]):
    """A list of :class:`CaptionPair` with the number of bad rows skipped while reading."""

    skipped: int = 0



def read_caption_corpus(path: Path, image_root: Path, *, skip_bad: bool = False, check_images: bool = True,
                        max_pixels: int = MAX_IMAGE_PIXELS) -> CaptionCorpus:
    """Read a stage-1 corpus (``image_path``, ``caption``). The stage-2 corpus is read with
    :func:`read_train_pairs` on its file."""
    file = str(path)
    checker = ImageChecker(image_root, check_images, max_pixels)
    raw = read_rows(Path(path), CAPTION_FIELDS)

    def parse(row: dict, index: int) -> CaptionPair:
        if not row["image_path"]:
            raise DataError("empty image path", file=file, row=index, field="image_path")
        if not row["caption"]:
            raise DataError("empty caption", file=file, row=index, field="caption")
        return CaptionPair(Item("", checker.path(row["image_path"], file=file, row=index, field="image_path")),
                           row["caption"])

    good, bad = validated(raw, iter(range(len(raw))), parse, file, skip_bad, None)
    corpus = CaptionCorpus(pair for _, pair in good)  # type: ignore[misc]
    corpus.skipped = bad
    return corpus
