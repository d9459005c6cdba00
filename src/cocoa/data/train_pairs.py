"""MMEB-train pairs in local folders: query, positive and optional hard negatives per row.

Accepted layouts: a parquet or jsonl file; a MiniMMEB folder (``train/``); the Hugging Face
layout (``<root>/<subset>/<split>-*.parquet`` or ``<root>/<subset>/<split>/*.parquet``).

Besides MMEB-train's fields, a row may give a video on any side (``qry_video_path``,
``pos_video_path``, ``neg_video_path``: a frame folder or video file under the image root),
placed at the text's ``<|video_1|>`` or before the text, as VLM2Vec-V2 trains on video. The hard
negative in ``neg_text`` / ``neg_image_path`` / ``neg_video_path`` (what every MMEB trainer reads)
may be followed by more in ``extra_negatives``: a list of objects with those three keys (``cocoa
mine --negatives N`` writes them; other trainers ignore the column).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cocoa.core.errors import DataError
from cocoa.data.images import MAX_IMAGE_PIXELS
from cocoa.data.items import Item, TrainPair
from cocoa.data.rows import (
    ImageChecker,
    read_rows,
    validated,
)

TRAIN_FIELDS = ("qry", "qry_image_path", "pos_text", "pos_image_path")
NEGATIVE_FIELDS = ("neg_text", "neg_image_path", "neg_video_path")
#: The column of a row's further hard negatives, each an object with the keys of :data:`NEGATIVE_FIELDS`.
EXTRA_NEGATIVES = "extra_negatives"
TRAIN_OPTIONAL_FIELDS = (*NEGATIVE_FIELDS, "qry_video_path", "pos_video_path", EXTRA_NEGATIVES)


class TrainPairs(list[TrainPair]):
    """A list of :class:`TrainPair` with the number of bad rows skipped while reading."""

    skipped: int = 0


def _train_files(root: Path, split: str) -> dict[str, list[Path]]:
    """Subset name -> data files of ``split``, for every accepted layout."""
    root = Path(root)
    if root.is_file():
        return {root.stem: [root]}
    folder = root / "train" if (root / "train").is_dir() else root
    subsets = {file.stem: [file] for file in sorted(folder.glob("*.parquet")) + sorted(folder.glob("*.jsonl"))}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for pattern in (f"{split}-*", f"{split}/*", f"{split}.*", "*"):
            files = sorted(f for f in sub.glob(pattern) if f.suffix in (".parquet", ".jsonl"))
            if files:
                subsets[sub.name] = files
                break
    return subsets


def list_train_subsets(root: Path, split: str = "original") -> list[str]:
    """Train subset names under ``root`` (file, MiniMMEB folder, folder of files, or HF layout)."""
    return sorted(_train_files(root, split))


def read_train_pairs(root: Path, subsets: list[str] | None, image_root: Path, split: str = "original",
                     cap: int | None = 100_000, seed: int = 0, skip_bad: bool = False, *,
                     check_images: bool = True, max_pixels: int = MAX_IMAGE_PIXELS) -> TrainPairs:
    """Read MMEB-train pairs, at most ``cap`` per subset (a sample fixed by ``seed``), in file order."""
    available = _train_files(root, split)
    names = sorted(available) if subsets is None else subsets
    checker = ImageChecker(image_root, check_images, max_pixels, allow_outside=True)  # training data: any path
    pairs = TrainPairs()
    for subset in names:
        if subset not in available:
            raise DataError(f"unknown train subset {subset!r}; have {', '.join(sorted(available))}", file=str(root))
        raw: list[dict] = []
        origin: list[tuple[str, int]] = []
        for file in available[subset]:
            rows = read_rows(file, TRAIN_FIELDS, TRAIN_OPTIONAL_FIELDS)
            raw.extend(rows)
            origin.extend((str(file), local) for local in range(len(rows)))
        order: list[int] = list(range(len(raw)))
        if cap is not None and len(raw) > cap:
            order = np.random.default_rng([seed, zlib.crc32(subset.encode())]).permutation(len(raw)).tolist()
        parse = _train_parser(checker, subset, origin)
        good, bad = validated(raw, iter(order), parse, subset, skip_bad, cap)
        pairs.extend(pair for _, pair in good)  # type: ignore[misc]
        pairs.skipped += bad
    return pairs


def pairs_digest(pairs: Sequence[TrainPair]) -> str:
    """SHA-256 of the rows' queries and positives (texts and media paths) in order: the identity of a
    training set that a batch plan or a mined-negatives file was made for."""
    digest = hashlib.sha256()
    for pair in pairs:
        sides = [(side.text, str(side.image) if side.image is not None else None,
                  str(side.video) if side.video is not None else None) for side in (pair.query, pair.positive)]
        digest.update(json.dumps([pair.subset, sides]).encode())
    return digest.hexdigest()


def _train_parser(checker: ImageChecker, subset: str,
                  origin: list[tuple[str, int]]) -> Callable[[dict, int], TrainPair]:
    def parse(row: dict, index: int) -> TrainPair:
        file, local = origin[index]
        query = checker.item(row["qry"], row["qry_image_path"], file=file, row=local, fields=("qry", "qry_image_path"),
                             video=row.get("qry_video_path"), video_field="qry_video_path")
        positive = checker.item(row["pos_text"], row["pos_image_path"], file=file, row=local,
                                fields=("pos_text", "pos_image_path"), video=row.get("pos_video_path"),
                                video_field="pos_video_path")
        return TrainPair(query, positive, _negatives(checker, row, file, local), subset)

    return parse


def _negatives(checker: ImageChecker, row: dict, file: str, local: int) -> tuple[Item, ...]:
    """The row's hard negatives: the ``neg_*`` columns' (if any), then each of ``extra_negatives``."""
    extra = row.get(EXTRA_NEGATIVES) or []
    if not isinstance(extra, list) or not all(isinstance(x, dict) for x in extra):
        raise DataError("expected a list of objects with neg_text, neg_image_path, neg_video_path",
                        file=file, row=local, field=EXTRA_NEGATIVES)
    sides = [(f"{EXTRA_NEGATIVES}[{k}].", x) for k, x in enumerate(extra)]
    if any(row.get(name) for name in NEGATIVE_FIELDS):
        sides.insert(0, ("", row))
    out = []
    for prefix, side in sides:
        if prefix and (unknown := sorted(set(side) - set(NEGATIVE_FIELDS))):
            raise DataError(f"unknown key {unknown[0]!r} (expected {', '.join(NEGATIVE_FIELDS)})",
                            file=file, row=local, field=prefix.rstrip("."))
        text, image, video = (side.get(name) for name in NEGATIVE_FIELDS)
        out.append(checker.item(text, image, file=file, row=local, video=video, video_field=f"{prefix}neg_video_path",
                                fields=(f"{prefix}neg_text", f"{prefix}neg_image_path")))
    return tuple(out)


# -- pre-training --------------------------------------------------------------------------------
