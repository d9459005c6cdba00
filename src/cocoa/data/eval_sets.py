"""MMEB-eval datasets in local folders: one dataset, each query with its own candidates, gold first.

Accepted layouts: a single parquet file; a MiniMMEB folder (``eval/``); the Hugging Face layout
(``<root>/<name>/test-*.parquet``). Texts are kept verbatim; image paths become absolute
(``image_root / path``). The instruction-split variant (``qry_inst`` / ``tgt_inst``) is read in
one of the formats of :mod:`cocoa.data.instruct`; the MMEB-V2 visual-document layout
(corpus / queries / qrels) by :mod:`cocoa.data.visdoc`, its video tasks by
:mod:`cocoa.data.video_tasks`.

A file may add videos to the same rows: ``qry_video_path`` (a string) and ``tgt_video_path`` (a
list as long as ``tgt_text``), frame folders or video files under the image root, ``""`` for
none; such files are read row by row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cocoa.core.errors import DataError
from cocoa.data.columns import CODED_STRING, Strings, entry_rows, first_appearance_ids, list_lengths, padded
from cocoa.data.hub_files import ROW_SUFFIXES
from cocoa.data.images import MAX_IMAGE_PIXELS
from cocoa.data.instruct import INSTRUCTION_FIELDS, apply_format
from cocoa.data.items import EMPTY_ITEM, EvalDataset, Item, ItemTable
from cocoa.data.rows import (
    ImageChecker,
    check_fields,
    log_skipped,
    read_table,
    skip_row,
)

EVAL_TYPES = {"qry_text": CODED_STRING, "qry_img_path": CODED_STRING,
              "tgt_text": pa.list_(CODED_STRING), "tgt_img_path": pa.list_(CODED_STRING)}
EVAL_FIELDS = tuple(EVAL_TYPES)
#: Optional video columns of an eval row (see the module docstring).
VIDEO_EVAL_FIELDS = frozenset({"qry_video_path", "tgt_video_path"})


@dataclass(frozen=True, eq=False)
class LoadedEvalDataset(EvalDataset):
    """An :class:`EvalDataset` with the number of bad rows skipped while reading, and the files read."""

    skipped: int = 0
    files: tuple[str, ...] = ()



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
    """Dataset names under ``root``: a MiniMMEB folder, a folder of parquet files, the HF layout
    (a dataset folder holding parquet files, itself or in its subset folders, or ``corpus`` /
    ``queries`` / ``qrels`` parts), and the MMEB-V2 tasks found where they are published
    (:mod:`cocoa.data.mmeb_v2`: folders named after a task's repo or in ``image-tasks/``,
    ``video-tasks/``, ``visdoc-tasks/`` are listed by task name, never as datasets of their own; a
    folder named after a task is listed even where its files are not the published ones)."""
    from cocoa.data.mmeb_v2 import CONTAINERS, PUBLISHED, folder_names, locate_all, looks_published

    root = Path(root)
    folder = root / "eval" if (root / "eval").is_dir() else root
    names = {file.stem for file in folder.glob("*.parquet")}
    names |= {sub.name for sub in folder.iterdir()
              if sub.is_dir() and (any(sub.glob("*.parquet")) or any(sub.glob("*/*.parquet")) or is_visdoc_folder(sub))}
    if (root / "manifest.json").is_file() or not looks_published(root):
        return sorted(names)
    names -= (folder_names() - set(PUBLISHED)) | {Path(c).parts[0] for c in CONTAINERS if c}
    names |= {name for name, found in locate_all(root).items() if not isinstance(found, DataError)}
    return sorted(names)


def is_visdoc_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a dataset in the visual-document layout (``corpus``, ``queries``, ``qrels``)."""
    folder = Path(folder)
    return all(any(p.suffix in ROW_SUFFIXES for p in folder.glob(f"{part}/**/*"))
               or any((folder / f"{part}{suffix}").is_file() for suffix in ROW_SUFFIXES)
               for part in ("corpus", "queries", "qrels"))


def read_eval_dataset(path: Path, name: str | None, image_root: Path, *, skip_bad: bool = False,
                      check_images: bool = True, max_pixels: int = MAX_IMAGE_PIXELS,
                      instruction_format: str | None = None, files: Sequence[Path] | None = None,
                      allow_outside_paths: bool = False) -> LoadedEvalDataset:
    """Read one MMEB-eval dataset (gold candidate first in every row), each distinct item once.

    ``path`` is a parquet file, a dataset folder, or a root holding ``name``; ``files`` the dataset's
    parquet files when they are known already. Media paths stay inside ``image_root`` unless
    ``allow_outside_paths`` (:mod:`cocoa.data.paths`). Files with ``qry_inst`` / ``tgt_inst`` are the
    instruction-split variant, read in ``instruction_format``.
    """
    checker = ImageChecker(image_root, check_images, max_pixels, allow_outside_paths)
    parts: list[_EvalColumns] = []
    skipped = 0
    dataset_name = name or (Path(path).stem if Path(path).is_file() else Path(path).name)
    files = list(files) if files is not None else _eval_files(path, name)
    if any(VIDEO_EVAL_FIELDS & set(_field_names(file)) for file in files):
        return _read_video_rows(files, dataset_name, checker, str(path), skip_bad)
    for file in files:
        columns, bad = _good_eval_rows(_eval_columns(file, dataset_name, instruction_format), checker, str(file),
                                       skip_bad)
        parts.append(columns)
        skipped += bad
    items, queries, candidates = _index_eval_items(_EvalColumns.concat(parts), checker)
    return LoadedEvalDataset(dataset_name, items, queries, candidates, str(path), skipped=skipped,
                             files=tuple(str(file) for file in files))


def _field_names(file: Path) -> list[str]:
    try:
        return pq.read_schema(file).names
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"cannot read parquet: {exc}", file=str(file)) from exc


def _read_video_rows(files: list[Path], name: str, checker: ImageChecker, source: str,
                     skip_bad: bool) -> LoadedEvalDataset:
    """MMEB-eval rows with ``qry_video_path`` / ``tgt_video_path``, checked and interned row by row."""
    table = ItemTable()
    queries: list[int] = []
    rows: list[list[int]] = []
    skipped = 0

    for file in files:
        parquet = read_table(file)
        check_fields(set(parquet.column_names), EVAL_FIELDS, tuple(VIDEO_EVAL_FIELDS), str(file), None)
        for row, values in enumerate(parquet.to_pylist()):
            try:
                query, candidates = _video_row(values, checker, str(file), row)
            except DataError as exc:
                skipped += skip_row(exc, skip_bad)
                continue
            queries.append(table.add(query))
            rows.append([table.add(c) for c in candidates])
    log_skipped(source, skipped)
    if not queries:
        raise DataError("no usable row", file=source)
    return LoadedEvalDataset(name, tuple(table.items), np.array(queries, dtype=np.int64),
                             padded(np.array([i for r in rows for i in r], dtype=np.int64),
                                    np.array([len(r) for r in rows])),
                             source, skipped=skipped, files=tuple(str(file) for file in files))


def _video_row(values: dict, checker: ImageChecker, file: str, row: int) -> tuple[Item, list[Item]]:
    query = checker.item(values["qry_text"], values["qry_img_path"], file=file, row=row,
                         fields=("qry_text", "qry_img_path"), video=values.get("qry_video_path"),
                         video_field="qry_video_path")
    texts, images = values["tgt_text"] or [], values["tgt_img_path"] or []
    videos = values.get("tgt_video_path") or [""] * len(texts)
    if not texts or not len(texts) == len(images) == len(videos):
        raise DataError(f"tgt_text, tgt_img_path and tgt_video_path need one entry per candidate "
                        f"({len(texts)}, {len(images)}, {len(videos)})", file=file, row=row, field="tgt_text")
    return query, [checker.item(t, i, file=file, row=row, fields=(f"tgt_text[{j}]", f"tgt_img_path[{j}]"), video=v,
                                video_field=f"tgt_video_path[{j}]")
                   for j, (t, i, v) in enumerate(zip(texts, images, videos, strict=True))]


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
    table = read_table(file, EVAL_FIELDS + INSTRUCTION_FIELDS)
    split = any(field in table.column_names for field in INSTRUCTION_FIELDS)
    fields = EVAL_FIELDS + INSTRUCTION_FIELDS if split else EVAL_FIELDS
    check_fields(set(table.column_names), fields, (), str(file), None)
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


def _good_eval_rows(columns: _EvalColumns, checker: ImageChecker, file: str,
                    skip_bad: bool) -> tuple[_EvalColumns, int]:
    """``columns`` without their bad rows and how many; raises for the first unless ``skip_bad``."""
    problems = _eval_problems(columns, checker)
    for row in sorted(problems):
        field, message = problems[row]
        skip_row(DataError(message, file=file, row=row, field=field), skip_bad)
    log_skipped(file, len(problems))
    good = np.ones(len(columns.query_text), dtype=bool)
    good[list(problems)] = False
    return columns.select(good), len(problems)


def _eval_problems(columns: _EvalColumns, checker: ImageChecker) -> dict[int, tuple[str, str]]:
    """Row -> ``(field, message)`` of the first problem of each bad row, checking the query, then
    the shape of the candidate lists, then each candidate in turn."""
    problems: dict[int, tuple[str, str]] = {}
    for row, field, message in (*_query_problems(columns, checker), *_list_problems(columns),
                                *_candidate_problems(columns, checker)):
        problems.setdefault(row, (field, message))
    return problems


def _query_problems(columns: _EvalColumns, checker: ImageChecker) -> Iterator[tuple[int, str, str]]:
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


def _candidate_problems(columns: _EvalColumns, checker: ImageChecker) -> Iterator[tuple[int, str, str]]:
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


def _image_problems(paths: Strings, checker: ImageChecker) -> tuple[np.ndarray, list[str]]:
    """Per entry the index of what is wrong with its image into the returned messages, ``-1`` for nothing."""
    messages: list[str] = []
    verdicts = np.full(len(paths.values), -1, dtype=np.int64)
    for code, path in enumerate(paths.values):
        problem = checker.resolve(path)[1] if path else None
        if problem is not None:
            verdicts[code] = len(messages)
            messages.append(problem)
    return verdicts[paths.codes], messages


def _index_eval_items(columns: _EvalColumns, checker: ImageChecker) -> tuple[tuple[Item, ...], np.ndarray, np.ndarray]:
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
