"""Caption corpora for the reconstruction stages: ``caption`` with an ``image_path`` or a ``video_path``.

A row names one of the two (the other empty or absent); a video is a frame folder or a video
file under the image root. Stage 1 reconstructs the caption of either (MNTP); its masked
auto-encoding covers image patches only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cocoa.core.errors import DataError
from cocoa.data.images import MAX_IMAGE_PIXELS
from cocoa.data.items import Item
from cocoa.data.rows import (
    ImageChecker,
    read_rows,
    validated,
)

CAPTION_FIELDS = ("image_path", "caption")
CAPTION_OPTIONAL_FIELDS = ("video_path",)


@dataclass(frozen=True)
class CaptionPair:
    """One stage-1 pre-training example: an item holding only an image or a video, and its caption."""

    media: Item
    caption: str


class CaptionCorpus(list[CaptionPair]):
    """A list of :class:`CaptionPair` with the number of bad rows skipped while reading."""

    skipped: int = 0



def read_caption_corpus(path: Path, image_root: Path, *, skip_bad: bool = False, check_images: bool = True,
                        max_pixels: int = MAX_IMAGE_PIXELS) -> CaptionCorpus:
    """Read a stage-1 corpus (module docstring). The stage-2 corpus is read with
    :func:`read_train_pairs` on its file."""
    file = str(path)
    checker = ImageChecker(image_root, check_images, max_pixels, allow_outside=True)  # training data: any path
    raw = read_rows(Path(path), CAPTION_FIELDS, CAPTION_OPTIONAL_FIELDS)

    def parse(row: dict, index: int) -> CaptionPair:
        image, video = row["image_path"], row.get("video_path")
        if bool(image) == bool(video):
            raise DataError("a row needs an image path or a video path, not both or neither", file=file, row=index,
                            field="image_path")
        if not row["caption"]:
            raise DataError("empty caption", file=file, row=index, field="caption")
        if video:
            return CaptionPair(Item(video=checker.video(video, file=file, row=index, field="video_path")),
                               row["caption"])
        return CaptionPair(Item("", checker.path(image, file=file, row=index, field="image_path")), row["caption"])

    good, bad = validated(raw, iter(range(len(raw))), parse, file, skip_bad, None)
    corpus = CaptionCorpus(pair for _, pair in good)  # type: ignore[misc]
    corpus.skipped = bad
    return corpus
