"""Reader of the MMEB-V2 visual-document layout: a BEIR-style corpus / queries / qrels triple.

A dataset folder holds three parts, each a folder of parquet files (``corpus/test-*.parquet``,
the Hugging Face layout of ``vidore/*_beir`` and ``openbmb/VisRAG-Ret-Test-*``) or one parquet
file (``corpus.parquet``):

* ``corpus``: ``corpus-id`` and the page image, either ``image`` (the Hugging Face image struct
  with ``bytes``, or plain bytes) or ``image_path`` (a path relative to the image root);
* ``queries``: ``query-id`` and ``query`` (text);
* ``qrels``: ``query-id``, ``corpus-id`` and ``score`` (graded relevance).

Other columns (language, answers, ...) are ignored; ids are compared as strings. As in
``src/data/eval_dataset/vidore_dataset.py`` of github.com/TIGER-AI-Lab/VLM2Vec, a query is
``"Find a document image that matches the given query: " + query``, every page
``"<|image_1|> Understand the content of the provided document image."`` with its image, qrels
with a score of 0 or less are dropped and a repeated (query, page) pair keeps its highest score
(``load_qrels_mapping``), and every query is ranked against the whole corpus. Page images stored
as bytes are written once to ``image_root/<dataset>/<corpus-id>`` (``.png`` added unless the id
ends with an image suffix), as the reference writes ``<image_root>/<corpus-id>.png``; a file
already there is used as it is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.data.images import MAX_IMAGE_PIXELS
from cocoa.data.items import IMAGE_PLACEHOLDER, Item, ItemTable
from cocoa.data.rows import ImageChecker, log_skipped, skip_row
from cocoa.errors import DataError
from cocoa.files import write_bytes

QUERY_INSTRUCTION = "Find a document image that matches the given query:"
TARGET_INSTRUCTION = "Understand the content of the provided document image."
#: Rows read from a parquet file at a time.
ROW_BATCH = 256
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class CorpusDataset:
    """Queries ranked against one shared corpus, with graded relevance per query.

    ``items[queries[i]]`` is query ``i``, ``items[corpus[j]]`` page ``j``; the relevant pages of
    query ``i`` are ``rel_doc[rel_ptr[i]:rel_ptr[i + 1]]`` (positions in ``corpus``) with gains
    ``rel_gain`` at the same places. ``doc_ids`` holds each page's ``corpus-id``.
    """

    name: str
    items: tuple[Item, ...]
    queries: np.ndarray
    corpus: np.ndarray
    rel_ptr: np.ndarray
    rel_doc: np.ndarray
    rel_gain: np.ndarray
    doc_ids: tuple[str, ...]
    source: str
    skipped: int = 0


def part_files(folder: Path, part: str) -> list[Path]:
    """The parquet files of one part (``test-*`` files first choice, else all of the folder)."""
    sub = Path(folder) / part
    files = sorted(sub.glob("test-*.parquet")) or sorted(sub.glob("*.parquet"))
    if not files and (Path(folder) / f"{part}.parquet").is_file():
        files = [Path(folder) / f"{part}.parquet"]
    if not files:
        raise DataError(f"no {part} parquet found (visual-document layout)", file=str(folder))
    return files


def _rows(folder: Path, part: str, required: tuple[str, ...]) -> Iterator[tuple[str, int, dict]]:
    """``(file, row, values)`` of every row of a part, read in batches (page images stay out of memory
    but for one batch), after checking that ``required`` fields exist."""
    for file in part_files(folder, part):
        try:
            parquet = pq.ParquetFile(file)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataError(f"cannot read parquet: {exc}", file=str(file)) from exc
        names = parquet.schema_arrow.names
        for field in required:
            if field not in names:
                raise DataError(f"missing field of the {part} part (wrong schema?)", file=str(file), field=field)
        wanted = [name for name in names if name in required or name in ("image", "image_path")]
        index = 0
        try:
            for batch in parquet.iter_batches(batch_size=ROW_BATCH, columns=wanted):
                for row in batch.to_pylist():
                    yield str(file), index, row
                    index += 1
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read parquet: {exc}", file=str(file), row=index) from exc


def _file_name(corpus_id: str) -> str:
    """A safe file name for a page: the id itself where possible, else a hash of it."""
    safe = corpus_id if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}", corpus_id) else (
        hashlib.sha256(corpus_id.encode("utf-8")).hexdigest()[:32])
    return safe if safe.lower().endswith(_IMAGE_SUFFIXES) else f"{safe}.png"


def _write_once(path: Path, data: bytes) -> None:
    if not path.is_file():
        write_bytes(path, data)


def _page_image(row: dict, corpus_id: str, extract_dir: Path, file: str, index: int) -> str:
    """The image of a corpus row as a path relative to the image root (bytes written out first)."""
    image = row.get("image")
    data = image.get("bytes") if isinstance(image, dict) else image
    if isinstance(data, bytes) and data:
        name = _file_name(corpus_id)
        try:
            _write_once(extract_dir / name, data)
        except OSError as exc:
            raise DataError(f"cannot write the page image to {extract_dir / name}: {exc}", file=file, row=index,
                            field="image") from exc
        return f"{extract_dir.name}/{name}"
    if row.get("image_path"):
        return str(row["image_path"])
    raise DataError("no page image (neither image bytes nor image_path)", file=file, row=index, field="image")


def read_visdoc_dataset(folder: Path, image_root: Path, *, name: str | None = None, skip_bad: bool = False,
                        check_images: bool = True, max_pixels: int = MAX_IMAGE_PIXELS) -> CorpusDataset:
    """Read one visual-document dataset from ``folder`` (see the module docstring)."""
    folder = Path(folder)
    name = name or folder.name
    checker = ImageChecker(image_root, check_images, max_pixels)
    extract_dir = Path(image_root) / name
    skipped = 0
    doc_pos: dict[str, int] = {}
    doc_paths: list[str] = []
    for file, index, row in _rows(folder, "corpus", ("corpus-id",)):
        try:
            corpus_id = str(row["corpus-id"])
            if corpus_id in doc_pos:
                raise DataError(f"corpus-id {corpus_id!r} repeats", file=file, row=index, field="corpus-id")
            path = checker.path(_page_image(row, corpus_id, extract_dir, file, index), file=file, row=index,
                                field="image")
        except DataError as exc:
            skipped += skip_row(exc, skip_bad)
            continue
        doc_pos[corpus_id] = len(doc_paths)
        doc_paths.append(path)
    relevance: dict[str, dict[int, float]] = {}
    for file, index, row in _rows(folder, "qrels", ("query-id", "corpus-id", "score")):
        try:
            score = float(row["score"])
        except (TypeError, ValueError):
            skipped += skip_row(DataError(f"score {row['score']!r} is not a number", file=file, row=index,
                                       field="score"), skip_bad)
            continue
        if score <= 0:
            continue
        position = doc_pos.get(str(row["corpus-id"]))
        if position is None:
            skipped += skip_row(DataError(f"corpus-id {row['corpus-id']!r} is not in the corpus", file=file,
                                       row=index, field="corpus-id"), skip_bad)
            continue
        gains = relevance.setdefault(str(row["query-id"]), {})
        gains[position] = max(gains.get(position, 0.0), score)
    query_texts: list[str] = []
    rel_ptr, rel_doc, rel_gain = [0], [], []
    for file, index, row in _rows(folder, "queries", ("query-id", "query")):
        query_id, text = str(row["query-id"]), row["query"]
        try:
            if not isinstance(text, str) or not text.strip():
                raise DataError("empty query", file=file, row=index, field="query")
            if query_id not in relevance:
                raise DataError(f"query-id {query_id!r} has no relevant page in qrels", file=file, row=index,
                                field="query-id")
        except DataError as exc:
            skipped += skip_row(exc, skip_bad)
            continue
        query_texts.append(f"{QUERY_INSTRUCTION} {text}")
        rel_doc += list(relevance[query_id])
        rel_gain += list(relevance[query_id].values())
        rel_ptr.append(len(rel_doc))
    log_skipped(str(folder), skipped)
    if not query_texts or not doc_paths:
        raise DataError("no usable query or page", file=str(folder))
    table = ItemTable()
    item_id = table.add

    queries = np.array([item_id(Item(text)) for text in query_texts], dtype=np.int64)
    page_text = f"{IMAGE_PLACEHOLDER} {TARGET_INSTRUCTION}"
    corpus = np.array([item_id(Item(page_text, path)) for path in doc_paths], dtype=np.int64)
    doc_ids = [""] * len(doc_paths)
    for corpus_id, position in doc_pos.items():
        doc_ids[position] = corpus_id
    return CorpusDataset(name, tuple(table.items), queries, corpus, np.array(rel_ptr, dtype=np.int64),
                         np.array(rel_doc, dtype=np.int64), np.array(rel_gain, dtype=np.float64), tuple(doc_ids),
                         str(folder), skipped)

