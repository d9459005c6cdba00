"""Readers for MMEB-eval, MMEB-train and pre-training corpora in local folders.

Accepted layouts: a single parquet (or jsonl, for train) file; a MiniMMEB folder (``eval/``,
``train/``, ``pretrain/``); the Hugging Face datasets layout (``<root>/<name>/test-*.parquet`` for
eval, ``<root>/<subset>/<split>-*.parquet`` or ``<root>/<subset>/<split>/*.parquet`` for train).
Texts are kept verbatim; image paths become absolute (``image_root / path``). The instruction-split
eval variant (``qry_inst`` / ``tgt_inst``) is read in one of the formats of :mod:`cocoa.data.instruct`;
the MMEB-V2 visual-document layout (corpus / queries / qrels) is read by :mod:`cocoa.data.visdoc`.

Bad rows raise :class:`DataError` naming file, row and field. With ``skip_bad=True`` they are
skipped, logged, and counted in the result's ``skipped`` attribute.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from cocoa.data.columns import CODED_STRING, Strings, entry_rows, first_appearance_ids, list_lengths, padded
from cocoa.data.images import MAX_IMAGE_PIXELS, shape_problem
from cocoa.data.instruct import INSTRUCTION_FIELDS, apply_format
from cocoa.data.items import EMPTY_ITEM, EvalDataset, Item, TrainPair, is_empty, text_problem
from cocoa.errors import DataError

log = logging.getLogger(__name__)

EVAL_TYPES = {"qry_text": CODED_STRING, "qry_img_path": CODED_STRING,
              "tgt_text": pa.list_(CODED_STRING), "tgt_img_path": pa.list_(CODED_STRING)}
EVAL_FIELDS = tuple(EVAL_TYPES)
TRAIN_FIELDS = ("qry", "qry_image_path", "pos_text", "pos_image_path")
TRAIN_OPTIONAL_FIELDS = ("neg_text", "neg_image_path")
CAPTION_FIELDS = ("image_path", "caption")


@dataclass(frozen=True, eq=False)
class LoadedEvalDataset(EvalDataset):
    """An :class:`EvalDataset` with the number of bad rows skipped while reading, and the files read."""

    skipped: int = 0
    files: tuple[str, ...] = ()


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
        self._resolved: dict[str, tuple[str, str | None]] = {}

    def item(self, text: str | None, image: str | None, *, file: str, row: int,
             fields: tuple[str, str]) -> Item:
        """An :class:`Item`; raises if it has neither text nor image, or its image is bad.

        ``fields`` names the text and the image field, for errors.
        """
        text = text or ""
        if is_empty(text, image or None):
            raise DataError(EMPTY_ITEM, file=file, row=row, field=fields[0])
        if problem := text_problem(text):
            raise DataError(problem, file=file, row=row, field=fields[0])
        return Item(text, self.path(image, file=file, row=row, field=fields[1]) if image else None)

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
            resolved = self._resolved[relative] = (absolute, self._problem(absolute) if self.enabled else None)
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


def _read_table(file: Path, coded: tuple[str, ...] = ()) -> pa.Table:
    """A parquet file as an Arrow table, or :class:`DataError` naming it.

    The strings of the fields in ``coded`` are read as codes into their distinct values.
    """
    try:
        schema = pq.ParquetFile(file).schema
        leaves = [schema.column(i).path for i in range(len(schema))]
        return pq.read_table(file, read_dictionary=[leaf for leaf in leaves if leaf.split(".")[0] in coded])
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read parquet: {exc}", file=str(file)) from exc


def _read_rows(file: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict]:
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
            _check_fields(set(row), required, optional, name, index)
        return rows
    table = _read_table(file)
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
            skipped += _skip(exc, skip_bad)
    _log_skipped(file, skipped)
    return sorted(good, key=lambda pair: pair[0]), skipped


def _skip(error: DataError, skip_bad: bool) -> int:
    """Raise ``error``, or with ``skip_bad`` log it and return 1 (one more skipped row)."""
    if not skip_bad:
        raise error
    log.warning("skipping bad row: %s", error)
    return 1


def _log_skipped(file: str, skipped: int) -> None:
    if skipped:
        log.warning("%s: skipped %d bad rows", file, skipped)


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
    """Dataset names under ``root``: a MiniMMEB folder, a folder of parquet files, or the HF layout
    (a dataset folder holding parquet files, or ``corpus`` / ``queries`` / ``qrels`` parts)."""
    root = Path(root)
    folder = root / "eval" if (root / "eval").is_dir() else root
    names = {file.stem for file in folder.glob("*.parquet")}
    names |= {sub.name for sub in folder.iterdir()
              if sub.is_dir() and (any(sub.glob("*.parquet")) or is_visdoc_folder(sub))}
    return sorted(names)


def is_visdoc_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a dataset in the visual-document layout (``corpus``, ``queries``, ``qrels``)."""
    return all(any(Path(folder).glob(f"{part}/*.parquet")) or (Path(folder) / f"{part}.parquet").is_file()
               for part in ("corpus", "queries", "qrels"))


def read_eval_dataset(path: Path, name: str | None, image_root: Path, *, skip_bad: bool = False,
                      check_images: bool = True, max_pixels: int = MAX_IMAGE_PIXELS,
                      instruction_format: str | None = None) -> LoadedEvalDataset:
    """Read one MMEB-eval dataset (gold candidate first in every row), each distinct item once.

    ``path`` is a parquet file, a dataset folder, or a root holding ``name``. Files with
    ``qry_inst`` / ``tgt_inst`` are the instruction-split variant, read in ``instruction_format``.
    """
    checker = _ImageChecker(image_root, check_images, max_pixels)
    parts: list[_EvalColumns] = []
    skipped = 0
    dataset_name = name or (Path(path).stem if Path(path).is_file() else Path(path).name)
    files = _eval_files(path, name)
    for file in files:
        columns, bad = _good_eval_rows(_eval_columns(file, dataset_name, instruction_format), checker, str(file),
                                       skip_bad)
        parts.append(columns)
        skipped += bad
    items, queries, candidates = _index_eval_items(_EvalColumns.concat(parts), checker)
    return LoadedEvalDataset(dataset_name, items, queries, candidates, str(path), skipped,
                             tuple(str(file) for file in files))


@dataclass(frozen=True, eq=False)
class _EvalColumns:
    """Eval rows as string codes: one query per row, the candidates of all rows one after the other.

    ``text_counts`` and ``image_counts`` give each row's list lengths (``-1`` for a null list);
    ``text`` and ``image`` hold the candidates of the rows whose lists are equally long.
    """

    query_text: Strings
    query_image: Strings
    text_counts: np.ndarray
    image_counts: np.ndarray
    text: Strings
    image: Strings

    @property
    def counts(self) -> np.ndarray:
        """Candidates per row in ``text`` and ``image`` (0 for a row whose lists differ)."""
        return np.where(self.text_counts == self.image_counts, np.maximum(self.text_counts, 0), 0)

    def select(self, keep: np.ndarray) -> _EvalColumns:
        """The rows where ``keep`` is true."""
        entries = keep[entry_rows(self.counts)]
        return _EvalColumns(self.query_text.take(keep), self.query_image.take(keep), self.text_counts[keep],
                            self.image_counts[keep], self.text.take(entries), self.image.take(entries))

    @staticmethod
    def concat(parts: Sequence[_EvalColumns]) -> _EvalColumns:
        """The rows of ``parts`` one after the other."""
        return _EvalColumns(Strings.concat([p.query_text for p in parts]),
                            Strings.concat([p.query_image for p in parts]),
                            np.concatenate([p.text_counts for p in parts]),
                            np.concatenate([p.image_counts for p in parts]),
                            Strings.concat([p.text for p in parts]), Strings.concat([p.image for p in parts]))


def _eval_columns(file: Path, dataset_name: str, instruction_format: str | None) -> _EvalColumns:
    """The eval fields of ``file`` as string codes (instructions put back for the instruction-split variant).

    A candidate field that cannot be read as lists reads as null lists, rejected row by row.
    """
    table = _read_table(file, EVAL_FIELDS + INSTRUCTION_FIELDS)
    split = any(field in table.column_names for field in INSTRUCTION_FIELDS)
    fields = EVAL_FIELDS + INSTRUCTION_FIELDS if split else EVAL_FIELDS
    _check_fields(set(table.column_names), fields, (), str(file), None)
    types = {**EVAL_TYPES, **dict.fromkeys(INSTRUCTION_FIELDS, CODED_STRING)}
    columns = {field: _coded_column(table, field, types[field], str(file)) for field in fields}
    if split:
        if instruction_format is None:
            raise DataError(f"instruction-split file of dataset {dataset_name!r} needs an instruction format "
                            "(known names have one; give others 'instruction_format' in a dataset card)",
                            file=str(file), field="qry_inst")
        columns = apply_format(columns, instruction_format, dataset_name)
    text_counts, image_counts = list_lengths(columns["tgt_text"]), list_lengths(columns["tgt_img_path"])
    shaped = text_counts == image_counts
    text = Strings.of(pc.list_flatten(columns["tgt_text"])).take(shaped[entry_rows(text_counts)])
    image = Strings.of(pc.list_flatten(columns["tgt_img_path"])).take(shaped[entry_rows(image_counts)])
    return _EvalColumns(Strings.of(columns["qry_text"]), Strings.of(columns["qry_img_path"]), text_counts,
                        image_counts, text, image)


def _coded_column(table: pa.Table, field: str, kind: pa.DataType, file: str) -> pa.ChunkedArray:
    """Column ``field`` of ``table`` cast to ``kind``; a list field that cannot be cast reads as null lists."""
    try:
        return table[field].cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        if not pa.types.is_list(kind):
            raise DataError(f"cannot read as strings: {exc}", file=file, field=field) from exc
        return pa.chunked_array([pa.nulls(len(table), kind)])


def _good_eval_rows(columns: _EvalColumns, checker: _ImageChecker, file: str,
                    skip_bad: bool) -> tuple[_EvalColumns, int]:
    """``columns`` without their bad rows and how many; raises for the first unless ``skip_bad``."""
    problems = _eval_problems(columns, checker)
    for row in sorted(problems):
        field, message = problems[row]
        _skip(DataError(message, file=file, row=row, field=field), skip_bad)
    _log_skipped(file, len(problems))
    good = np.ones(len(columns.query_text), dtype=bool)
    good[list(problems)] = False
    return columns.select(good), len(problems)


def _eval_problems(columns: _EvalColumns, checker: _ImageChecker) -> dict[int, tuple[str, str]]:
    """Row -> ``(field, message)`` of the first problem of each bad row, checking the query, then
    the shape of the candidate lists, then each candidate in turn."""
    problems: dict[int, tuple[str, str]] = {}
    for row, field, message in (*_query_problems(columns, checker), *_list_problems(columns),
                                *_candidate_problems(columns, checker)):
        problems.setdefault(row, (field, message))
    return problems


def _query_problems(columns: _EvalColumns, checker: _ImageChecker) -> Iterator[tuple[int, str, str]]:
    neither = columns.query_text.empty() & columns.query_image.empty()
    image_problem, messages = _image_problems(columns.query_image, checker)
    for row in np.flatnonzero(neither | (image_problem >= 0)).tolist():
        if neither[row]:
            yield row, "qry_text", EMPTY_ITEM
        else:
            yield row, "qry_img_path", messages[image_problem[row]]


def _list_problems(columns: _EvalColumns) -> Iterator[tuple[int, str, str]]:
    text_counts, image_counts = columns.text_counts, columns.image_counts
    for row in np.flatnonzero((text_counts != image_counts) | (text_counts <= 0)).tolist():
        texts, images = int(text_counts[row]), int(image_counts[row])
        if min(texts, images) < 0:
            yield row, "tgt_text", "candidates must be lists"
        elif texts != images:
            yield row, "tgt_img_path", f"tgt_text has {texts} entries but tgt_img_path has {images}"
        else:
            yield row, "tgt_text", "no candidates"


def _candidate_problems(columns: _EvalColumns, checker: _ImageChecker) -> Iterator[tuple[int, str, str]]:
    """The first bad candidate of each row."""
    neither = columns.text.empty() & columns.image.empty()
    image_problem, messages = _image_problems(columns.image, checker)
    counts = columns.counts
    owner, starts = entry_rows(counts), np.cumsum(counts) - counts
    bad = np.flatnonzero(neither | (image_problem >= 0))
    _, first = np.unique(owner[bad], return_index=True)
    for entry in bad[first].tolist():
        row = int(owner[entry])
        j = entry - int(starts[row])
        if neither[entry]:
            yield row, f"tgt_text[{j}]", EMPTY_ITEM
        else:
            yield row, f"tgt_img_path[{j}]", messages[image_problem[entry]]


def _image_problems(paths: Strings, checker: _ImageChecker) -> tuple[np.ndarray, list[str]]:
    """Per entry the index of what is wrong with its image into the returned messages, ``-1`` for nothing."""
    messages: list[str] = []
    verdicts = np.full(len(paths.values), -1, dtype=np.int64)
    for code, path in enumerate(paths.values):
        problem = checker.resolve(path)[1] if path else None
        if problem is not None:
            verdicts[code] = len(messages)
            messages.append(problem)
    return verdicts[paths.codes], messages


def _index_eval_items(columns: _EvalColumns, checker: _ImageChecker) -> tuple[tuple[Item, ...], np.ndarray, np.ndarray]:
    """The distinct items of good eval rows in order of first appearance (queries, then candidates
    row by row), the query's index into them per row and the candidates' as a ``-1``-padded matrix."""
    texts = Strings.concat([columns.query_text, columns.text])
    images = Strings.concat([columns.query_image, columns.image])
    absolute: dict[str, int] = {}
    image_ids = np.array([absolute.setdefault(checker.resolve(path)[0], len(absolute) + 1) if path else 0
                          for path in images.values], dtype=np.int64)[images.codes]
    base = len(absolute) + 1  # one integer key per (text, image) pair
    ids, keys = first_appearance_ids(texts.codes * base + image_ids)
    paths = [None, *absolute]
    items = tuple(Item(texts.values[key // base], paths[key % base]) for key in keys.tolist())
    queries = len(columns.query_text)
    return items, ids[:queries], padded(ids[queries:], columns.counts)


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
