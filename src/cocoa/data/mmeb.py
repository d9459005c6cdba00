"""Readers for MMEB-eval, MMEB-train and pre-training corpora in local folders.

Accepted layouts: a single parquet (or jsonl, for train) file; a MiniMMEB folder (``eval/``,
``train/``, ``pretrain/``); the Hugging Face datasets layout (``<root>/<name>/test-*.parquet`` for
eval, ``<root>/<subset>/<split>-*.parquet`` or ``<root>/<subset>/<split>/*.parquet`` for train).
Texts are kept verbatim; image paths become absolute (``image_root / path``).

Bad rows raise :class:`DataError` naming file, row and field. With ``skip_bad=True`` they are
skipped, logged, and counted in the result's ``skipped`` attribute.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from cocoa.data.images import MAX_IMAGE_PIXELS
from cocoa.data.items import EvalDataset, EvalRow, Item, TrainPair
from cocoa.errors import DataError

log = logging.getLogger(__name__)

EVAL_FIELDS = ("qry_text", "qry_img_path", "tgt_text", "tgt_img_path")
TRAIN_FIELDS = ("qry", "qry_image_path", "pos_text", "pos_image_path")
TRAIN_OPTIONAL_FIELDS = ("neg_text", "neg_image_path")
CAPTION_FIELDS = ("image_path", "caption")


@dataclass(frozen=True)
class LoadedEvalDataset(EvalDataset):
    """An :class:`EvalDataset` with the number of bad rows skipped while reading."""

    skipped: int = 0


class TrainPairs(list[TrainPair]):
    """A list of :class:`TrainPair` with the number of bad rows skipped while reading."""

    skipped: int = 0


@dataclass(frozen=True)
class CaptionPair:
    """One stage-1 pre-training example: an image-only item and its caption."""

    image: Item
    caption: str


class CaptionCorpus(list[CaptionPair]):
    """A list of :class:`CaptionPair` with the number of bad rows skipped while reading."""

    skipped: int = 0


class _ImageChecker:
    """Checks that images exist, open and are not oversized (header only, plus ``verify``)."""

    def __init__(self, image_root: Path, enabled: bool, max_pixels: int) -> None:
        self.root, self.enabled, self.max_pixels = Path(image_root).absolute(), enabled, max_pixels
        self._resolved: dict[str, str] = {}

    def item(self, text: str | None, image: str | None, *, file: str, row: int,
             fields: tuple[str, str]) -> Item:
        """An :class:`Item`; raises if it has neither text nor image, or its image is bad.

        ``fields`` names the text and the image field, for errors.
        """
        text = text or ""
        if not text and not image:
            raise DataError("neither text nor image", file=file, row=row, field=fields[0])
        return Item(text, self.path(image, file=file, row=row, field=fields[1]) if image else None)

    def path(self, relative: str, *, file: str, row: int, field: str) -> str:
        """The absolute path of ``relative``, checked once per distinct path."""
        absolute = self._resolved.get(relative)
        if absolute is None:
            absolute = str(self.root / relative)
            if self.enabled:
                self._check(absolute, file=file, row=row, field=field)
            self._resolved[relative] = absolute
        return absolute

    def _check(self, path: str, *, file: str, row: int, field: str) -> None:
        if not Path(path).is_file():
            raise DataError(f"image file not found: {path}", file=file, row=row, field=field)
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    raise DataError(f"image {path} is {width}x{height} pixels, over the limit of "
                                    f"{self.max_pixels}", file=file, row=row, field=field)
                image.verify()
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot read image {path}: {exc}", file=file, row=row, field=field) from exc


def _read_rows(file: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a parquet or jsonl file, after checking its fields against the schema."""
    name = str(file)
    if file.suffix == ".jsonl":
        rows = []
        for index, line in enumerate(file.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"invalid JSON: {exc}", file=name, row=index) from exc
        for index, row in enumerate(rows):
            _check_fields(set(row), required, optional, name, index)
        return rows
    try:
        table = pq.read_table(file)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read parquet: {exc}", file=name) from exc
    _check_fields(set(table.column_names), required, optional, name, None)
    return table.select([c for c in table.column_names if not c.startswith("__")]).to_pylist()


def _check_fields(present: set[str], required: tuple[str, ...], optional: tuple[str, ...], file: str,
                  row: int | None) -> None:
    for missing in (name for name in required if name not in present):
        raise DataError("missing field (wrong schema?)", file=file, row=row, field=missing)
    for unknown in sorted(name for name in present - set(required) - set(optional) if not name.startswith("__")):
        raise DataError(f"unknown field (expected {', '.join(required + optional)})", file=file, row=row,
                        field=unknown)


def _validated(rows: list[dict], order: Iterator[int], parse: Callable[[dict, int], object], file: str,
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
            if not skip_bad:
                raise
            skipped += 1
            log.warning("skipping bad row: %s", exc)
    if skipped:
        log.warning("%s: skipped %d bad rows", file, skipped)
    return sorted(good, key=lambda pair: pair[0]), skipped


# -- eval ----------------------------------------------------------------------------------------


def _eval_files(path: Path, name: str | None) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    folders = [path / name, path / "eval" / name] if name else [path]
    for folder in folders:
        files = sorted(folder.glob("test-*.parquet")) or sorted(folder.glob("*.parquet"))
        if folder.is_dir() and files:
            return files
    if name:
        for file in (path / f"{name}.parquet", path / "eval" / f"{name}.parquet"):
            if file.is_file():
                return [file]
    raise DataError(f"no eval parquet found for dataset {name!r}", file=str(path))


def list_eval_datasets(root: Path) -> list[str]:
    """Dataset names under ``root``: a MiniMMEB folder, a folder of parquet files, or the HF layout."""
    root = Path(root)
    folder = root / "eval" if (root / "eval").is_dir() else root
    names = {file.stem for file in folder.glob("*.parquet")}
    names |= {sub.name for sub in folder.iterdir() if sub.is_dir() and any(sub.glob("*.parquet"))}
    return sorted(names)


def read_eval_dataset(path: Path, name: str | None, image_root: Path, *, skip_bad: bool = False,
                      check_images: bool = True, max_pixels: int = MAX_IMAGE_PIXELS) -> LoadedEvalDataset:
    """Read one MMEB-eval dataset (gold candidate first in every row).

    ``path`` is a parquet file, a dataset folder, or a root holding ``name``.
    """
    files = _eval_files(path, name)
    checker = _ImageChecker(image_root, check_images, max_pixels)
    rows: list[EvalRow] = []
    skipped = 0
    for file in files:
        raw = _read_rows(file, EVAL_FIELDS)
        parse = _eval_parser(checker, str(file))
        good, bad = _validated(raw, iter(range(len(raw))), parse, str(file), skip_bad, None)
        rows.extend(row for _, row in good)  # type: ignore[misc]
        skipped += bad
    dataset_name = name or (Path(path).stem if Path(path).is_file() else Path(path).name)
    return LoadedEvalDataset(dataset_name, tuple(rows), str(path), skipped)


def _eval_parser(checker: _ImageChecker, file: str) -> Callable[[dict, int], EvalRow]:
    def parse(raw: dict, index: int) -> EvalRow:
        query = checker.item(raw["qry_text"], raw["qry_img_path"], file=file, row=index,
                             fields=("qry_text", "qry_img_path"))
        texts, images = raw["tgt_text"], raw["tgt_img_path"]
        if not isinstance(texts, list) or not isinstance(images, list):
            raise DataError("candidates must be lists", file=file, row=index, field="tgt_text")
        if len(texts) != len(images):
            raise DataError(f"tgt_text has {len(texts)} entries but tgt_img_path has {len(images)}",
                            file=file, row=index, field="tgt_img_path")
        if not texts:
            raise DataError("no candidates", file=file, row=index, field="tgt_text")
        candidates = tuple(checker.item(text, image, file=file, row=index,
                                        fields=(f"tgt_text[{j}]", f"tgt_img_path[{j}]"))
                           for j, (text, image) in enumerate(zip(texts, images, strict=True)))
        return EvalRow(query, candidates)

    return parse


# -- train ---------------------------------------------------------------------------------------


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
    checker = _ImageChecker(image_root, check_images, max_pixels)
    pairs = TrainPairs()
    for subset in names:
        if subset not in available:
            raise DataError(f"unknown train subset {subset!r}; have {', '.join(sorted(available))}", file=str(root))
        raw: list[dict] = []
        origin: list[tuple[str, int]] = []
        for file in available[subset]:
            rows = _read_rows(file, TRAIN_FIELDS, TRAIN_OPTIONAL_FIELDS)
            raw.extend(rows)
            origin.extend((str(file), local) for local in range(len(rows)))
        order: list[int] = list(range(len(raw)))
        if cap is not None and len(raw) > cap:
            order = np.random.default_rng([seed, zlib.crc32(subset.encode())]).permutation(len(raw)).tolist()
        parse = _train_parser(checker, subset, origin)
        good, bad = _validated(raw, iter(order), parse, subset, skip_bad, cap)
        pairs.extend(pair for _, pair in good)  # type: ignore[misc]
        pairs.skipped += bad
    return pairs


def _train_parser(checker: _ImageChecker, subset: str,
                  origin: list[tuple[str, int]]) -> Callable[[dict, int], TrainPair]:
    def parse(row: dict, index: int) -> TrainPair:
        file, local = origin[index]
        query = checker.item(row["qry"], row["qry_image_path"], file=file, row=local, fields=("qry", "qry_image_path"))
        positive = checker.item(row["pos_text"], row["pos_image_path"], file=file, row=local,
                                fields=("pos_text", "pos_image_path"))
        negative = (checker.item(row.get("neg_text"), row.get("neg_image_path"), file=file, row=local,
                                 fields=("neg_text", "neg_image_path"))
                    if row.get("neg_text") or row.get("neg_image_path") else None)
        return TrainPair(query, positive, negative, subset)

    return parse


# -- pre-training --------------------------------------------------------------------------------


def read_caption_corpus(path: Path, image_root: Path, *, skip_bad: bool = False, check_images: bool = True,
                        max_pixels: int = MAX_IMAGE_PIXELS) -> CaptionCorpus:
    """Read a stage-1 corpus (``image_path``, ``caption``). The stage-2 corpus is read with
    :func:`read_train_pairs` on its file."""
    file = str(path)
    checker = _ImageChecker(image_root, check_images, max_pixels)
    raw = _read_rows(Path(path), CAPTION_FIELDS)

    def parse(row: dict, index: int) -> CaptionPair:
        if not row["image_path"]:
            raise DataError("empty image path", file=file, row=index, field="image_path")
        if not row["caption"]:
            raise DataError("empty caption", file=file, row=index, field="caption")
        return CaptionPair(Item("", checker.path(row["image_path"], file=file, row=index, field="image_path")),
                           row["caption"])

    good, bad = _validated(raw, iter(range(len(raw))), parse, file, skip_bad, None)
    corpus = CaptionCorpus(pair for _, pair in good)  # type: ignore[misc]
    corpus.skipped = bad
    return corpus
