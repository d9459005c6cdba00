"""Leak check: no eval image, video frame or text-only eval query (``eval/``, ``reworded/``, ``recombined/``) may appear
in any training corpus of a MiniMMEB folder.

Video frames are compared one by one, except frames of one flat colour (an empty canvas shows
nothing of an item)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from cocoa.data.minimmeb.wordings import HELD_OUT_SETS

_TRAIN_IMAGE_COLUMNS = ("qry_image_path", "pos_image_path", "neg_image_path", "image_path")
_TRAIN_VIDEO_COLUMNS = ("qry_video_path", "pos_video_path", "neg_video_path", "video_path")
_TRAIN_TEXT_COLUMNS = ("qry", "pos_text", "neg_text", "caption")


class _PixelHashes:
    """Content hashes of decoded pixels (so re-encoded copies still match), cached per path."""

    def __init__(self, image_root: Path) -> None:
        self.root = image_root
        self._cache: dict[str, str] = {}

    def __call__(self, relative: str) -> str:
        if relative not in self._cache:
            with Image.open(self.root / relative) as image:
                self._cache[relative] = _pixel_hash(image.convert("RGB"))
        return self._cache[relative]

    def frames(self, relative: str) -> list[tuple[str, str]]:
        """``(frame path, pixel hash)`` of a clip's frames that are not one flat colour (each decoded once)."""
        folder = self.root / relative
        kept = []
        for frame in sorted(folder.iterdir()):
            with Image.open(frame) as image:
                rgb = image.convert("RGB")
            if all(low == high for low, high in rgb.getextrema()):
                continue
            name = frame.relative_to(self.root).as_posix()
            if name not in self._cache:
                self._cache[name] = _pixel_hash(rgb)
            kept.append((name, self._cache[name]))
        return kept


def _pixel_hash(rgb: Image.Image) -> str:
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def training_corpora(out_dir: Path) -> list[Path]:
    """Every training-side parquet of a MiniMMEB folder (train subsets and pre-training corpora)."""
    return sorted((out_dir / "train").glob("*.parquet")) + sorted((out_dir / "pretrain").glob("*.parquet"))


def check_leaks(out_dir: Path) -> list[str]:
    """Describe every eval image (by pixels) or text-only eval query found in a training corpus.

    An empty list means no leak.
    """
    out_dir = Path(out_dir)
    pixels = _PixelHashes(out_dir / "images")
    train_images: dict[str, str] = {}
    train_texts: dict[str, str] = {}
    for corpus in training_corpora(out_dir):
        table = pq.read_table(corpus).to_pydict()
        name = corpus.relative_to(out_dir).as_posix()
        for column in _TRAIN_IMAGE_COLUMNS:
            for path in table.get(column, []):
                if path:
                    train_images.setdefault(pixels(path), f"{name}:{path}")
        for column in _TRAIN_VIDEO_COLUMNS:
            for path in table.get(column, []):
                if path:
                    for frame, digest in pixels.frames(path):
                        train_images.setdefault(digest, f"{name}:{frame}")
        for column in _TRAIN_TEXT_COLUMNS:
            for text in table.get(column, []):
                if text:
                    train_texts.setdefault(text, name)
    leaks: list[str] = []
    for dataset in [file for folder in ("eval", *HELD_OUT_SETS)
                    for file in sorted((out_dir / folder).glob("*.parquet"))]:
        table = pq.read_table(dataset).to_pydict()
        label = dataset.relative_to(out_dir).as_posix()
        seen: set[str] = set()
        videos = table.get("qry_video_path", [""] * len(table["qry_text"]))
        for row, (text, image, video) in enumerate(zip(table["qry_text"], table["qry_img_path"], videos, strict=True)):
            if not image and not video and text in train_texts:
                leaks.append(f"{label} row {row}: query text appears in {train_texts[text]}")
            frames = [video, *(table["tgt_video_path"][row] if "tgt_video_path" in table else [])]
            paths = [image, *table["tgt_img_path"][row]]
            for clip in frames:
                if clip and clip not in seen:
                    seen.add(clip)
                    paths += [frame for frame, _ in pixels.frames(clip.removesuffix(".mp4"))]
            for path in paths:
                if path and path not in seen:
                    seen.add(path)
                    match = train_images.get(pixels(path))
                    if match:
                        leaks.append(f"{label} row {row}: image {path} has the same pixels as {match}")
    return leaks
