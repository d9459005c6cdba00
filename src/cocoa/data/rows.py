"""Checked rows of local files: the image and text checks, schema checks and bad-row skipping every reader uses.

Bad rows raise :class:`DataError` naming file, row and field; with ``skip_bad`` they are
skipped, logged and counted.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cocoa.core.errors import DataError
from cocoa.data.images import shape_problem
from cocoa.data.items import EMPTY_ITEM, Item, is_empty, text_problem
from cocoa.data.paths import outside_problem
from cocoa.data.videos import video_problem

log = logging.getLogger(__name__)


class ImageChecker:
    """Checks that images exist, open and are not oversized (header only, plus ``verify``), and that every
    media path stays inside the image root (:mod:`cocoa.data.paths`) unless ``allow_outside``."""

    def __init__(self, image_root: Path, enabled: bool, max_pixels: int, allow_outside: bool = False) -> None:
        self.root, self.enabled, self.max_pixels = Path(image_root).absolute(), enabled, max_pixels
        self.allow_outside = allow_outside
        self._resolved: dict[str, tuple[str, str | None]] = {}
        self._videos: dict[str, str | None] = {}

    def item(self, text: str | None, image: str | None, *, file: str, row: int,
             fields: tuple[str, str], video: str | None = None, video_field: str = "video_path") -> Item:
        """An :class:`Item`; raises if it has neither text nor image nor video, or its image or video is bad.

        ``fields`` names the text and the image field, ``video_field`` the video's, for errors; the
        video is a frame folder or a video file under the image root.
        """
        text = text or ""
        if is_empty(text, image or None, video or None):
            raise DataError(EMPTY_ITEM, file=file, row=row, field=fields[0])
        if problem := text_problem(text):
            raise DataError(problem, file=file, row=row, field=fields[0])
        return Item(text, self.path(image, file=file, row=row, field=fields[1]) if image else None,
                    self.video(video, file=file, row=row, field=video_field) if video else None)

    def video(self, relative: str, *, file: str, row: int, field: str) -> str:
        """The absolute path of the video ``relative``; raises if it is missing or unreadable (checked once)."""
        absolute = str(self.root / relative)
        if absolute not in self._videos:
            outside = None if self.allow_outside else outside_problem(self.root, relative)
            self._videos[absolute] = outside or (video_problem(absolute) if self.enabled else None)
        if (problem := self._videos[absolute]) is not None:
            raise DataError(problem, file=file, row=row, field=field)
        return absolute

    def path(self, relative: str, *, file: str, row: int, field: str) -> str:
        """The absolute path of ``relative``; raises if its image is bad."""
        absolute, problem = self.resolve(relative)
        if problem is not None:
            raise DataError(problem, file=file, row=row, field=field)
        return absolute

    def resolve(self, relative: str) -> tuple[str, str | None]:
        """The absolute path of ``relative`` and what is wrong with its image (``None`` if nothing),
        checked once per distinct path."""
        resolved = self._resolved.get(relative)
        if resolved is None:
            absolute = str(self.root / relative)
            outside = None if self.allow_outside else outside_problem(self.root, relative)
            resolved = self._resolved[relative] = (absolute, outside or (self._problem(absolute) if self.enabled
                                                                         else None))
        return resolved

    def _problem(self, path: str) -> str | None:
        if not os.path.isfile(path):
            return f"image file not found: {path}"
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    return f"image {path} is {width}x{height} pixels, over the limit of {self.max_pixels}"
                if problem := shape_problem(width, height):
                    return f"{problem}: {path}"
                image.verify()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            return f"cannot read image {path}: {exc}"
        return None


def read_table(file: Path, coded: tuple[str, ...] = ()) -> pa.Table:
    """A parquet file as an Arrow table, or :class:`DataError` naming it.

    The strings of the fields in ``coded`` are read as codes into their distinct values.
    """
    try:
        schema = pq.ParquetFile(file).schema
        leaves = [schema.column(i).path for i in range(len(schema))]
        return pq.read_table(file, read_dictionary=[leaf for leaf in leaves if leaf.split(".")[0] in coded])
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read parquet: {exc}", file=str(file)) from exc


def read_rows(file: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a parquet or jsonl file, after checking its fields against the schema."""
    name = str(file)
    if file.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"invalid JSON: {exc}", file=name, line=number) from exc
        for index, row in enumerate(rows):
            check_fields(set(row), required, optional, name, index)
        return rows
    table = read_table(file)
    check_fields(set(table.column_names), required, optional, name, None)
    return table.select([c for c in table.column_names if not c.startswith("__")]).to_pylist()


def check_fields(present: set[str], required: tuple[str, ...], optional: tuple[str, ...], file: str,
                  row: int | None) -> None:
    for missing in (name for name in required if name not in present):
        raise DataError("missing field (wrong schema?)", file=file, row=row, field=missing)
    for unknown in sorted(name for name in present - set(required) - set(optional) if not name.startswith("__")):
        raise DataError(f"unknown field (expected {', '.join(required + optional)})", file=file, row=row,
                        field=unknown)


def validated(rows: list[dict], order: Iterator[int], parse: Callable[[dict, int], object], file: str,
               skip_bad: bool, limit: int | None) -> tuple[list[tuple[int, object]], int]:
    """Parse rows in ``order`` until ``limit`` good ones; returns (index, parsed) pairs and skips."""
    good: list[tuple[int, object]] = []
    skipped = 0
    for index in order:
        if limit is not None and len(good) >= limit:
            break
        try:
            good.append((index, parse(rows[index], index)))
        except DataError as exc:
            skipped += skip_row(exc, skip_bad)
    log_skipped(file, skipped)
    return sorted(good, key=lambda pair: pair[0]), skipped


def skip_row(error: DataError, skip_bad: bool) -> int:
    """Raise ``error``, or with ``skip_bad`` log it and return 1 (one more skipped row)."""
    if not skip_bad:
        raise error
    log.warning("skipping bad row: %s", error)
    return 1


def log_skipped(file: str, skipped: int) -> None:
    if skipped:
        log.warning("%s: skipped %d bad rows", file, skipped)


# -- eval ----------------------------------------------------------------------------------------
