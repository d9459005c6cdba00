"""Reader of the MMEB-V2 visual-document layout: a BEIR-style corpus / queries / qrels triple.

A dataset folder holds three parts, each a config of the Hugging Face repo (``corpus/test-*.parquet``
in ``vidore/*_beir``, ``corpus/train-*.parquet`` in ``openbmb/VisRAG-Ret-Test-*``, whatever the
README's ``configs:`` block says) or one file at the top (``corpus.parquet``, ``queries.jsonl``);
:func:`cocoa.data.hub_files.split_files` decides which files, in parquet, JSON or JSON Lines:

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
as bytes are written once to ``image_root/pages/<hash of the bytes><suffix>`` (the suffix of the
id when it has an image suffix, else ``.png``): keyed by content, a page is never taken from
another corpus or an older version of the same folder, and identical pages are stored once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cocoa.core.errors import DataError
from cocoa.core.files import write_bytes
from cocoa.data.hub_files import ROW_SUFFIXES, fields, iter_rows, split_files
from cocoa.data.images import MAX_IMAGE_PIXELS
from cocoa.data.items import IMAGE_PLACEHOLDER, Item, ItemTable
from cocoa.data.rows import ImageChecker, log_skipped, skip_row

QUERY_INSTRUCTION = "Find a document image that matches the given query:"
TARGET_INSTRUCTION = "Understand the content of the provided document image."
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


#: The folder under the image root that page images stored as bytes are written to.
PAGES_FOLDER = "pages"


def part_files(folder: Path, part: str, split: str = "test") -> list[Path]:
    """The row files of one part: its ``split``, else the only split the part has."""
    try:
        return split_files(folder, part, split)
    except DataError:
        sub = Path(folder) / part
        files = sorted(p for p in sub.glob("*") if p.suffix in ROW_SUFFIXES) if sub.is_dir() else []
        if not files:
            raise
        return files


def _rows(files: list[Path], part: str, required: tuple[str, ...]) -> Iterator[tuple[str, int, dict]]:
    """``(file, row, values)`` of every row of a part (parquet in batches, so page images stay out of
    memory but for one batch), after checking that ``required`` fields exist."""
    for file in files:
        names = fields(file)
        for field in required:
            if field not in names:
                raise DataError(f"missing field of the {part} part (wrong schema?)", file=str(file), field=field)
        wanted = [name for name in names if name in required or name in ("image", "image_path")]
        for index, row in enumerate(iter_rows(file, wanted)):
            yield str(file), index, row


def _file_name(corpus_id: str, data: bytes) -> str:
    """A page's file name: a hash of its bytes, with the id's image suffix (``.png`` when it has none)."""
    suffix = Path(corpus_id).suffix.lower()
    return hashlib.sha256(data).hexdigest()[:32] + (suffix if suffix in _IMAGE_SUFFIXES else ".png")


def _write_once(path: Path, data: bytes) -> None:
    if not path.is_file():
        write_bytes(path, data)


def _page_image(row: dict, corpus_id: str, extract_dir: Path, file: str, index: int) -> str:
    """The image of a corpus row as a path relative to the image root (bytes written out first)."""
    image = row.get("image")
    data = image.get("bytes") if isinstance(image, dict) else image
    if isinstance(data, bytes) and data:
        name = _file_name(corpus_id, data)
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
                        check_images: bool = True, max_pixels: int = MAX_IMAGE_PIXELS,
                        parts: dict[str, list[Path]] | None = None, allow_outside_paths: bool = False,
                        ) -> CorpusDataset:
    """Read one visual-document dataset from ``folder`` (see the module docstring); ``parts`` gives
    the files of ``corpus``, ``queries`` and ``qrels`` when they are known already."""
    folder = Path(folder)
    name = name or folder.name
    parts = parts or {part: part_files(folder, part) for part in ("corpus", "queries", "qrels")}
    checker = ImageChecker(image_root, check_images, max_pixels, allow_outside_paths)
    extract_dir = Path(image_root) / PAGES_FOLDER
    skipped = 0
    doc_pos: dict[str, int] = {}
    doc_paths: list[str] = []
    for file, index, row in _rows(parts["corpus"], "corpus", ("corpus-id",)):
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
    for file, index, row in _rows(parts["qrels"], "qrels", ("query-id", "corpus-id", "score")):
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
    for file, index, row in _rows(parts["queries"], "queries", ("query-id", "query")):
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

