"""Deterministic, atomic writers for MiniMMEB: PNG images and MMEB-schema parquet files."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cocoa.core.files import write_bytes

#: The MMEB-eval schema (TIGER-Lab/MMEB-eval).
EVAL_SCHEMA = pa.schema([
    ("qry_text", pa.string()), ("qry_img_path", pa.string()),
    ("tgt_text", pa.list_(pa.string())), ("tgt_img_path", pa.list_(pa.string())),
])
#: The MMEB-train schema (TIGER-Lab/MMEB-train), with hard negatives.
TRAIN_SCHEMA = pa.schema([
    ("qry", pa.string()), ("qry_image_path", pa.string()),
    ("pos_text", pa.string()), ("pos_image_path", pa.string()),
    ("neg_text", pa.string()), ("neg_image_path", pa.string()),
])
#: The MMEB-eval schema with the video columns cocoa reads (``qry_video_path``, ``tgt_video_path``).
VIDEO_EVAL_SCHEMA = pa.schema([
    ("qry_text", pa.string()), ("qry_img_path", pa.string()), ("qry_video_path", pa.string()),
    ("tgt_text", pa.list_(pa.string())), ("tgt_img_path", pa.list_(pa.string())),
    ("tgt_video_path", pa.list_(pa.string())),
])
#: The MMEB-train schema with a video column per side.
VIDEO_TRAIN_SCHEMA = pa.schema([
    ("qry", pa.string()), ("qry_image_path", pa.string()), ("qry_video_path", pa.string()),
    ("pos_text", pa.string()), ("pos_image_path", pa.string()), ("pos_video_path", pa.string()),
    ("neg_text", pa.string()), ("neg_image_path", pa.string()), ("neg_video_path", pa.string()),
])
#: The stage-1 caption corpus schema (an image or a video per row).
CAPTION_SCHEMA = pa.schema([("image_path", pa.string()), ("video_path", pa.string()), ("caption", pa.string())])


def write_parquet(path: Path, rows: dict[str, list], schema: pa.Schema) -> str:
    """Write ``rows`` (column -> values) with ``schema`` atomically; return the file's sha256."""
    table = pa.table({name: rows[name] for name in schema.names}, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=256)
    data = sink.getvalue().to_pybytes()
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


class ImageStore:
    """Saves PNGs under ``root`` and hands back their paths relative to it; saves each key once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._saved: set[str] = set()

    def save(self, relative: str, image: Image.Image) -> str:
        if relative not in self._saved:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=6)
            write_bytes(self.root / relative, buffer.getvalue())
            self._saved.add(relative)
        return relative

    def has(self, relative: str) -> bool:
        return relative in self._saved
