"""Stream the rows of a corpus to embed: a JSONL file, a parquet file or a folder of images.

A JSONL line or parquet row is ``{"id": ..., "text": ..., "image": "path", "video": ...}``:
``id`` defaults to the line (parquet: row) number, media paths may be relative to the file's
folder, and each row needs a text, an image or a video; the whole row is kept as the payload.
A folder yields one row per image file below it (``.jpg``, ``.png``, ...), in sorted order, with
its path relative to the folder as ``id``. Rows are read one at a time and checked only when
asked for (:meth:`Corpus.row`), so a run that skips finished shards does not open their images.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocoa.core.errors import DataError
from cocoa.data.images import image_file_problem
from cocoa.data.items import EMPTY_ITEM, is_empty, text_problem
from cocoa.data.paths import outside_problem
from cocoa.data.videos import video_problem

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
JSONL_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})
#: Rows per parquet read.
PARQUET_BATCH = 1024


@dataclass(frozen=True)
class Row:
    """One input row, checked: its media paths are absolute and readable; ``where`` is its location
    (file and JSONL line or parquet row) for errors."""

    id: Any
    text: str
    image: str | None
    video: str | list[str] | None
    raw: dict[str, Any]
    where: dict[str, Any]

    def as_input(self) -> dict[str, Any]:
        return {"text": self.text, "image": self.image, "video": self.video}



def _walk_images(folder: Path) -> Iterator[Path]:
    """Image files below ``folder`` in sorted order, one directory listing in memory at a time."""
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            yield from _walk_images(Path(entry.path))
        elif entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            yield Path(entry.path)


class Corpus:
    """The rows of ``path`` (a ``.jsonl``/``.parquet`` file or a folder of images), streamed; media paths are
    relative to the file's folder and stay inside it unless ``allow_outside`` (:mod:`cocoa.data.paths`)."""

    def __init__(self, path: str | Path, allow_outside: bool = False) -> None:
        self.path, self.allow_outside = Path(path), allow_outside
        if self.path.is_dir():
            self.kind, self.base = "folder", self.path
        elif not self.path.is_file():
            raise DataError("no such file or folder", file=str(self.path))
        elif self.path.suffix.lower() in JSONL_SUFFIXES:
            self.kind, self.base = "jsonl", self.path.parent
        elif self.path.suffix.lower() == ".parquet":
            self.kind, self.base = "parquet", self.path.parent
        else:
            raise DataError("input must be a .jsonl or .parquet file, or a folder of images", file=str(self.path))
        self._count: int | None = None

    def __len__(self) -> int:
        """The number of rows (counted once, by one pass that parses nothing)."""
        if self._count is None:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                self._count = pq.ParquetFile(self.path).metadata.num_rows
            elif self.kind == "jsonl":
                self._count = sum(1 for _ in self._jsonl_lines())
            else:
                self._count = sum(1 for _ in _walk_images(self.path))
        return self._count

    def describe(self) -> dict[str, Any]:
        """What identifies the input in a manifest: path, kind, row count, and size and mtime for a file;
        for a folder, a hash of its image files' relative paths, sizes and mtimes."""
        record: dict[str, Any] = {"path": str(self.path.resolve()), "kind": self.kind, "rows": len(self)}
        if self.kind != "folder":
            stat = self.path.stat()
            record.update(bytes=stat.st_size, mtime_ns=stat.st_mtime_ns)
        else:
            listing = hashlib.sha256()
            for file in _walk_images(self.path):
                stat = file.stat()
                listing.update(f"{file.relative_to(self.path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            record["listing_sha256"] = listing.hexdigest()
        return record

    def raw_rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(number, row object)`` in order, parsed but not checked: the number is the JSONL line, or the
        1-based parquet row or folder position; it is also the default ``id``."""
        if self.kind == "jsonl":
            yield from self._jsonl()
        elif self.kind == "parquet":
            yield from self._parquet()
        else:
            for number, file in enumerate(_walk_images(self.path), start=1):
                name = file.relative_to(self.path).as_posix()
                yield number, {"id": name, "image": name}

    def rows(self) -> Iterator[Row]:
        """Every row, checked."""
        for number, raw in self.raw_rows():
            yield self.row(number, raw)

    def _jsonl_lines(self) -> Iterator[tuple[int, str]]:
        """``(line number, line)`` of every non-blank line: what counts as a row (``__len__``) and what is read."""
        try:
            with self.path.open("rb") as f:
                number = 0
                for chunk in f:
                    for raw in chunk.splitlines():  # \n, \r\n and \r end a line, as in text mode
                        number += 1
                        try:
                            line = raw.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            raise DataError(f"not UTF-8 text (byte {exc.start + 1} of the line: "
                                            f"{raw[exc.start:exc.start + 1]!r})", file=str(self.path),
                                            line=number) from exc
                        if line.strip():
                            yield number, line
        except OSError as exc:
            raise DataError(f"cannot read input: {exc}", file=str(self.path)) from exc

    def _jsonl(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for number, line in self._jsonl_lines():
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", file=str(self.path), line=number) from exc
            if not isinstance(raw, dict):
                raise DataError("row must be a JSON object", file=str(self.path), line=number)
            yield number, raw

    def _parquet(self) -> Iterator[tuple[int, dict[str, Any]]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(self.path)
            columns = set(table.schema_arrow.names)
            if not columns & {"text", "image", "video"}:
                raise DataError(f"has none of the columns text, image, video (columns: {sorted(columns)})",
                                file=str(self.path))
            number = 0
            for batch in table.iter_batches(batch_size=PARQUET_BATCH):
                for raw in batch.to_pylist():
                    number += 1
                    yield number, {k: v for k, v in raw.items() if v is not None}
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read parquet: {exc}", file=str(self.path)) from exc

    def where(self, number: int) -> dict[str, Any]:
        """The :class:`DataError` location of row ``number`` of :meth:`raw_rows` (a JSONL line or parquet row)."""
        return ({"file": str(self.path), "line": number} if self.kind == "jsonl"
                else {"file": str(self.path), "row": number - 1})

    def row(self, number: int, raw: dict[str, Any]) -> Row:
        """``raw`` checked, with media paths made absolute, or a :class:`DataError` naming the line and field."""
        where = self.where(number)
        text, image, video = raw.get("text") or "", raw.get("image"), raw.get("video")
        if not isinstance(text, str):
            raise DataError("must be a string", **where, field="text")
        if problem := text_problem(text):
            raise DataError(problem, **where, field="text")
        if image is not None:
            if not isinstance(image, str) or not image:
                raise DataError("must be a path string", **where, field="image")
            self._inside(image, where, "image")
            image = str((self.base / image).resolve())
            if problem := image_file_problem(image):
                raise DataError(problem, **where, field="image")
        if video is not None:
            if isinstance(video, str) and video:
                self._inside(video, where, "video")
                video = str((self.base / video).resolve())
            elif isinstance(video, list) and video and all(isinstance(v, str) and v for v in video):
                for v in video:
                    self._inside(v, where, "video")
                video = [str((self.base / v).resolve()) for v in video]
            else:
                raise DataError("must be a frame folder or video file path, or a list of frame paths",
                                **where, field="video")
            if problem := video_problem(video if isinstance(video, str) else tuple(video)):
                raise DataError(problem, **where, field="video")
        if is_empty(text, image, video):
            others = sorted(set(raw) - {"id", "text", "image", "video"})
            hint = f"; its keys {others} are kept as payload, not embedded" if others else ""
            raise DataError(f"row has {EMPTY_ITEM} (expected 'text', 'image' and/or 'video'{hint})", **where,
                            field="text")
        return Row(raw.get("id", number), text, image, video, raw, where)

    def _inside(self, path: str, where: dict[str, Any], field: str) -> None:
        if not self.allow_outside and (problem := outside_problem(self.base, path)):
            raise DataError(problem, **where, field=field)


def read_rows(path: Path, allow_outside: bool = False) -> list[Row]:
    """Every row of a small input, checked, or a :class:`DataError` (also for an input with no rows)."""
    rows = list(Corpus(path, allow_outside).rows())
    if not rows:
        raise DataError("input has no rows", file=str(path))
    return rows
