"""A FAISS inner-product index over embeddings, with ids and JSON payloads, saved as a folder.

Kinds: ``flat`` (exact), ``hnsw`` (graph, no training), and for large collections ``ivf``
(clustered) and ``ivfpq`` (clustered, vectors compressed by product quantisation), both trained
on a sample of the vectors. Embeddings are L2-normalised, so the inner product is the cosine
similarity. A saved index is a folder holding ``index.faiss``, ``records.jsonl`` (one
``{"id", "payload"}`` per vector, in index order), ``records.offsets.npy`` (where each record
starts) and ``meta.json`` (dim, kind, count, model fingerprint, search parameters, the
recall@10 measured when it was built, and the SHA-256 of the three other files, checked when the
index is loaded: a changed byte is an error naming the file); it is written to a temporary sibling and renamed into
place, so a reader never sees half an index. A loaded index memory-maps the IVF lists or the flat
vectors of the FAISS file (pages the OS reads in as queries touch them; an HNSW graph is read into
memory) and reads a record only when a search returns it.

:func:`build_from_shards` streams the shards of ``cocoa encode`` into an index: peak memory is
the index itself plus one shard, the training sample, and 16 bytes per vector (ids' hashes and
record offsets).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import faiss
import numpy as np
from tqdm.auto import tqdm

from cocoa.core.errors import ConfigError, DataError
from cocoa.core.files import atomic_folder, sha256_file

if TYPE_CHECKING:
    from cocoa.inference.shards import ShardReader

IndexKind = Literal["flat", "hnsw", "ivf", "ivfpq"]
KINDS: tuple[str, ...] = get_args(IndexKind)
TRAINED_KINDS = frozenset({"ivf", "ivfpq"})
INDEX_FILE, RECORDS_FILE, OFFSETS_FILE, META_FILE = "index.faiss", "records.jsonl", "records.offsets.npy", "meta.json"
#: The files whose SHA-256 ``meta.json`` records.
CHECKED_FILES = (INDEX_FILE, RECORDS_FILE, OFFSETS_FILE)
FORMAT = 1
#: FAISS defaults: inverted lists probed per IVF query, HNSW search breadth and neighbours per HNSW node.
NPROBE, EF_SEARCH, HNSW_M = 16, 64, 32
#: Training points per IVF list (FAISS warns below 39) and the fewest a product quantiser needs (256 x 39).
TRAIN_PER_LIST, MIN_PQ_TRAIN = 64, 256 * 39
#: Query vectors sampled from the corpus to measure recall@10 against exact search when building.
RECALL_QUERIES, RECALL_K = 500, 10


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: Any
    score: float
    payload: dict[str, Any]


def _matrix(vectors: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise DataError(f"{what} must be a 2-D (n, dim) array, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise DataError(f"{what} have dim {array.shape[1]} but the index has dim {dim}")
    if not np.isfinite(array).all():
        raise DataError(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(array)


def default_pq_m(dim: int) -> int:
    """Sub-quantisers of an IVF-PQ index: about one code byte per 4 features (a divisor of ``dim``)."""
    return max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)


def _empty_index(kind: str, dim: int, count: int, hnsw_m: int, nlist: int | None, pq_m: int | None) -> faiss.Index:
    """An index of ``kind`` for ``count`` vectors of ``dim`` features (IVF kinds still to be trained)."""
    if kind not in KINDS:
        raise ConfigError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        return faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    lists = nlist or max(1, round(math.sqrt(count)))
    if not 1 <= lists <= count:
        raise ConfigError(f"nlist must be between 1 and the number of vectors ({count}), got {lists}")
    if kind == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    m = pq_m or default_pq_m(dim)
    if dim % m:
        raise ConfigError(f"pq_m must divide the embedding width {dim}, got {m}")
    if count < MIN_PQ_TRAIN:
        raise ConfigError(f"ivfpq needs at least {MIN_PQ_TRAIN} vectors to train its quantiser, got {count}; "
                          "use flat, hnsw or ivf")
    return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, m, 8, faiss.METRIC_INNER_PRODUCT)


def train_size(index: faiss.Index, count: int) -> int:
    """Vectors to train ``index`` on: ``TRAIN_PER_LIST`` per list, at least what a quantiser needs."""
    floor = MIN_PQ_TRAIN if isinstance(index, faiss.IndexIVFPQ) else 0
    return min(count, max(TRAIN_PER_LIST * index.nlist, floor))


def _id_hash(key: Any) -> int:
    return int.from_bytes(hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).digest(), "little")


def _check_unique(hashes: np.ndarray, ids_of: Any) -> None:
    """A :class:`DataError` naming the first repeated id (``ids_of(row)`` gives a row's id); rows whose
    8-byte hashes collide are compared by their ids."""
    order = np.argsort(hashes, kind="stable")
    for pair in np.flatnonzero(np.diff(hashes[order]) == 0):
        first, row = int(order[pair]), int(order[pair + 1])
        if ids_of(first) == ids_of(row):
            raise DataError(f"duplicate id {ids_of(row)!r}", row=row, field="id")


class Records:
    """Ids and payloads in index order: held in memory, or read from ``records.jsonl`` on demand."""

    def __init__(self, ids: Sequence[Any], payloads: Sequence[dict[str, Any]]) -> None:
        self._ids, self._payloads = list(ids), list(payloads)
        self._fd: int | None = None
        self._offsets: np.ndarray | None = None

    @classmethod
    def open(cls, folder: Path) -> Records:
        """The records of a saved index, with offsets from ``records.offsets.npy`` (or one pass over the
        records of an index saved without them)."""
        records = cls([], [])
        path = folder / RECORDS_FILE
        if (folder / OFFSETS_FILE).is_file():
            records._offsets = np.load(folder / OFFSETS_FILE, mmap_mode="r", allow_pickle=False)
        else:
            ends = [0]
            with path.open("rb") as f:
                for line in f:
                    ends.append(ends[-1] + len(line))
            records._offsets = np.asarray(ends, dtype=np.int64)
        records._fd = os.open(path, os.O_RDONLY)
        return records

    def close(self) -> None:
        """Close the records file (an index in memory has none)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __len__(self) -> int:
        return len(self._ids) if self._offsets is None else len(self._offsets) - 1

    def __getitem__(self, row: int) -> tuple[Any, dict[str, Any]]:
        if self._offsets is None:
            return self._ids[row], self._payloads[row]
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        record = json.loads(os.pread(self._fd, end - start, start))
        return record["id"], record["payload"]

    def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        return (self[row] for row in range(len(self)))


class RecordWriter:
    """Writes ``records.jsonl`` and its offsets, one record at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._file = (folder / RECORDS_FILE).open("wb")
        self._ends = array("q", [0])

    def add(self, key: Any, payload: dict[str, Any] | str) -> None:
        """Append one record; ``payload`` may already be JSON text."""
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
        line = f'{{"id": {json.dumps(key, ensure_ascii=False)}, "payload": {text}}}\n'.encode()
        self._file.write(line)
        self._ends.append(self._ends[-1] + len(line))

    def close(self) -> None:
        self._file.close()
        np.save(self.folder / OFFSETS_FILE, np.frombuffer(self._ends, dtype=np.int64), allow_pickle=False)


class VectorIndex:
    """Embeddings with their ids and payloads; ``search`` returns the top-k by inner product."""

    def __init__(self, index: faiss.Index, records: Records, *, kind: str, fingerprint: str | None = None,
                 nprobe: int = NPROBE, ef_search: int = EF_SEARCH, recall: float | None = None) -> None:
        if index.ntotal != len(records):
            raise DataError(f"index holds {index.ntotal} vectors but has {len(records)} records")
        self.index, self.records = index, records
        self.kind, self.fingerprint, self.recall = kind, fingerprint, recall
        self.nprobe, self.ef_search = nprobe, ef_search

    def check_model(self, fingerprint: str, dims: Sequence[int]) -> None:
        """A :class:`ConfigError` unless this index was built by the model with ``fingerprint`` (when it
        records one) at one of its embedding ``dims``."""
        if self.dim not in dims:
            raise ConfigError(f"index has dim {self.dim} but the model embeds to dims {', '.join(map(str, dims))}")
        if self.fingerprint and self.fingerprint != fingerprint:
            raise ConfigError(f"index was built with model {self.fingerprint}, not this model ({fingerprint}); "
                              "rebuild it")

    @classmethod
    def build(cls, embeddings: np.ndarray, ids: Sequence[Any], payloads: Sequence[dict[str, Any]] | None = None,
              *, kind: str = "flat", fingerprint: str | None = None, hnsw_m: int = HNSW_M, nlist: int | None = None,
              pq_m: int | None = None, nprobe: int = NPROBE, ef_search: int = EF_SEARCH) -> VectorIndex:
        """Index ``embeddings`` (``(n, dim)``, in memory) under unique JSON-serialisable ``ids``."""
        if kind not in KINDS:
            raise ConfigError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
        vectors = _matrix(embeddings, None, "embeddings")
        if len(vectors) == 0:
            raise DataError("cannot build an index from no embeddings")
        payloads = [{} for _ in ids] if payloads is None else list(payloads)
        if not len(vectors) == len(ids) == len(payloads):
            raise DataError(f"got {len(vectors)} embeddings, {len(ids)} ids and {len(payloads)} payloads")
        _check_unique(np.asarray([_id_hash(key) for key in ids], dtype=np.uint64), lambda row: ids[row])
        index = _empty_index(kind, vectors.shape[1], len(vectors), hnsw_m, nlist, pq_m)
        if kind in TRAINED_KINDS:
            sample = np.random.default_rng(0).choice(len(vectors), train_size(index, len(vectors)), replace=False)
            index.train(vectors[np.sort(sample)])
        index.add(vectors)
        return cls(index, Records(ids, payloads), kind=kind, fingerprint=fingerprint, nprobe=nprobe,
                   ef_search=ef_search)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's ``(scores, rows)`` of the best ``min(k, len(self))`` vectors per query (row -1: none)."""
        if k <= 0:
            raise ConfigError(f"k must be positive, got {k}")
        if len(self) == 0:
            raise DataError("the index is empty")
        matrix = _matrix(queries, self.dim, "queries")
        _set_search_parameters(self.index, self.nprobe, max(self.ef_search, k))
        return self.index.search(matrix, min(k, len(self)))

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[Hit]]:
        """The best ``min(k, len(self))`` hits for each query row, best first."""
        scores, rows = self.search_rows(queries, k)
        return [[self._hit(int(r), float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
                for srow, rrow in zip(scores, rows, strict=True)]

    def _hit(self, row: int, score: float) -> Hit:
        key, payload = self.records[row]
        return Hit(key, score, payload)

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "dim": self.dim, "kind": self.kind, "count": len(self),
                "fingerprint": self.fingerprint, "nprobe": self.nprobe, "ef_search": self.ef_search,
                f"recall@{RECALL_K}": self.recall}

    def save(self, folder: str | Path) -> Path:
        """Write the index to ``folder`` atomically, replacing an index already there."""
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            writer = RecordWriter(tmp)
            for key, payload in self.records:
                writer.add(key, payload)
            writer.close()
            _write_meta(tmp, self.meta())
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, verify: bool = True) -> VectorIndex:
        """Read an index saved by :meth:`save` or :func:`build_from_shards` (the FAISS file memory-mapped).

        Args:
            folder: The index folder.
            verify: Check each file against the SHA-256 in ``meta.json`` first (one read of the
                folder; an index saved without checksums is not checked).

        Returns:
            The index, reading records on demand.
        """
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise DataError("not an index folder (no meta.json)", file=str(folder))
        try:
            meta = json.loads(meta_path.read_text())
            if verify:
                _verify(folder, meta.get("sha256", {}))
            # IVF lists and flat codes are memory-mapped (FAISS maps the one or the other, not both)
            flags = (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if meta.get("kind") in TRAINED_KINDS
                     else faiss.IO_FLAG_MMAP_IFC)
            index = faiss.read_index(str(folder / INDEX_FILE), flags)
            records = Records.open(folder)
        except (OSError, RuntimeError, ValueError) as exc:
            raise DataError(f"cannot read index: {exc}", file=str(folder)) from exc
        if meta.get("format") != FORMAT or index.d != meta.get("dim") or index.ntotal != len(records):
            records.close()
            raise DataError("index files disagree with meta.json (format, dim or count)", file=str(folder))
        return cls(index, records, kind=meta["kind"], fingerprint=meta.get("fingerprint"),
                   nprobe=meta.get("nprobe", NPROBE), ef_search=meta.get("ef_search", EF_SEARCH),
                   recall=meta.get(f"recall@{RECALL_K}"))


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """``meta.json`` with the SHA-256 of the index's other files, written last."""
    meta = {**meta, "sha256": {name: sha256_file(folder / name) for name in CHECKED_FILES}}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _verify(folder: Path, digests: dict[str, str]) -> None:
    for name, digest in digests.items():
        if (found := sha256_file(folder / name)) != digest:
            raise DataError(f"changed since the index was built: SHA-256 {found[:16]}... instead of {digest[:16]}... "
                            "(rebuild the index)", file=str(folder / name))


def _set_search_parameters(index: faiss.Index, nprobe: int, ef_search: int) -> None:
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = min(nprobe, index.nlist)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef_search


def _exact_top_k(reader: ShardReader, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows of the exact top-``k`` of each query over every shard, streamed."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    first = 0
    for shard in reader:
        scores = queries @ shard.vectors.T
        rows = np.broadcast_to(np.arange(first, first + len(shard.vectors)), scores.shape)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_rows = np.concatenate([best_rows, rows], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
        first += len(shard.vectors)
    return best_rows


def _without(rows: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of each query's ``rows`` other than the query's ``own`` row (leave-one-out)."""
    return np.stack([row[row != self][:k] for row, self in zip(rows, own, strict=True)])


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k that ``found`` (the approximate top-k rows) holds."""
    k = exact.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(e.tolist())) / k for f, e in zip(found, exact, strict=True)]))


def build_from_shards(reader: ShardReader, out: str | Path, *, kind: str = "flat", hnsw_m: int = HNSW_M,
                      nlist: int | None = None, pq_m: int | None = None, nprobe: int = NPROBE,
                      ef_search: int = EF_SEARCH, recall_queries: int = RECALL_QUERIES, seed: int = 0,
                      show_progress: bool = True) -> VectorIndex:
    """Stream the shards of ``reader`` into an index of ``kind`` saved in ``out`` (atomically).

    IVF kinds train on a random sample of the vectors (:func:`train_size`). Approximate kinds
    measure recall@10 against exact search for ``recall_queries`` vectors drawn from the corpus,
    leave-one-out (each query's own row is dropped from both lists, so finding itself does not
    count); it is recorded in ``meta.json``. Ids must be unique.
    """
    count, dim = len(reader), reader.dim
    if count == 0:
        raise DataError("cannot build an index from no embeddings", file=str(reader.folder))
    if Path(out).resolve() in (reader.folder.resolve(), *reader.folder.resolve().parents):
        raise ConfigError(f"the index folder {out} would replace the shards it reads; write it elsewhere")
    index = _empty_index(kind, dim, count, hnsw_m, nlist, pq_m)
    rng = np.random.default_rng(seed)
    wanted = [np.sort(rng.choice(count, train_size(index, count), replace=False)) if kind in TRAINED_KINDS else [],
              np.sort(rng.choice(count, min(recall_queries, count), replace=False)) if kind != "flat" else []]
    train, queries = _gather_rows(reader, [np.asarray(rows, dtype=np.int64) for rows in wanted], dim)
    if len(train):
        index.train(train)
    del train
    hashes = np.zeros(count, dtype=np.uint64)
    folder = Path(out)
    with atomic_folder(folder) as tmp:
        writer = RecordWriter(tmp)
        first = 0
        with tqdm(total=count, unit="vector", desc=f"index ({kind})", disable=not show_progress) as bar:
            for shard in reader:
                index.add(np.ascontiguousarray(shard.vectors, dtype=np.float32))
                for row, (key, payload) in enumerate(zip(shard.ids, shard.payloads, strict=True)):
                    writer.add(key, payload)
                    hashes[first + row] = _id_hash(key)
                first += len(shard.ids)
                bar.update(len(shard.ids))
        writer.close()
        built = VectorIndex(index, Records.open(tmp), kind=kind, fingerprint=reader.fingerprint, nprobe=nprobe,
                            ef_search=ef_search)
        try:
            _check_unique(hashes, lambda row: built.records[row][0])
            if len(queries) and count > 1:
                k = min(RECALL_K, count - 1)
                found = _without(built.search_rows(queries, k + 1)[1], wanted[1], k)
                built.recall = recall_at_k(found, _without(_exact_top_k(reader, queries, k + 1), wanted[1], k))
        finally:
            built.records.close()
        faiss.write_index(index, str(tmp / INDEX_FILE))
        _write_meta(tmp, built.meta())
    built.records = Records.open(folder)
    return built


def _gather_rows(reader: ShardReader, wanted: Sequence[np.ndarray], dim: int) -> list[np.ndarray]:
    """The vectors at each sorted array of global ``wanted`` rows, in one pass over the shards."""
    out = [np.zeros((len(rows), dim), dtype=np.float32) for rows in wanted]
    first = 0
    for shard in reader:
        end = first + len(shard.vectors)
        for rows, dest in zip(wanted, out, strict=True):
            lo, hi = np.searchsorted(rows, [first, end])
            dest[lo:hi] = shard.vectors[rows[lo:hi] - first]
        first = end
    return out
