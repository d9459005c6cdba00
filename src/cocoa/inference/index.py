"""A FAISS inner-product index over embeddings, with ids and JSON payloads, saved as a folder.

Kinds: ``flat`` (exact), ``hnsw`` (graph, no training) and ``ivf`` (clustered, trained on the
vectors themselves) for large collections. Embeddings are L2-normalised, so the inner
product is the cosine similarity. A saved index is a folder holding ``index.faiss``,
``records.jsonl`` (one ``{"id", "payload"}`` per vector, in index order) and ``meta.json``
(dim, kind, count, model fingerprint, search parameters); it is written to a temporary
sibling and renamed into place, so a reader never sees half an index.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import faiss
import numpy as np

from cocoa.errors import ConfigError, DataError
from cocoa.files import atomic_folder

IndexKind = Literal["flat", "hnsw", "ivf"]
KINDS: tuple[str, ...] = get_args(IndexKind)
INDEX_FILE, RECORDS_FILE, META_FILE = "index.faiss", "records.jsonl", "meta.json"
FORMAT = 1


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


def _faiss_index(vectors: np.ndarray, kind: str, hnsw_m: int, nlist: int | None) -> faiss.Index:
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        lists = nlist or max(1, round(math.sqrt(len(vectors))))
        if not 1 <= lists <= len(vectors):
            raise ConfigError(f"nlist must be between 1 and the number of vectors ({len(vectors)}), got {lists}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    index.add(vectors)
    return index


#: FAISS defaults: inverted lists probed per IVF query, HNSW search breadth and neighbours per HNSW node.
NPROBE, EF_SEARCH, HNSW_M = 16, 64, 32


class VectorIndex:
    """Embeddings with their ids and payloads; ``search`` returns the top-k by inner product."""

    def __init__(self, index: faiss.Index, ids: Sequence[Any], payloads: Sequence[dict[str, Any]], *,
                 kind: str, fingerprint: str | None = None, nprobe: int = NPROBE, ef_search: int = EF_SEARCH) -> None:
        if index.ntotal != len(ids) or len(ids) != len(payloads):
            raise DataError(f"index holds {index.ntotal} vectors but has {len(ids)} ids and {len(payloads)} payloads")
        self.index, self.ids, self.payloads = index, list(ids), list(payloads)
        self.kind, self.fingerprint = kind, fingerprint
        self.nprobe, self.ef_search = nprobe, ef_search

    def check_model(self, fingerprint: str, widths: Sequence[int]) -> None:
        """A :class:`ConfigError` unless this index was built by the model with ``fingerprint`` (when it
        records one) at one of its embedding ``widths``."""
        if self.dim not in widths:
            raise ConfigError(f"index has dim {self.dim} but the model embeds to widths {', '.join(map(str, widths))}")
        if self.fingerprint and self.fingerprint != fingerprint:
            raise ConfigError(f"index was built with model {self.fingerprint}, not this model ({fingerprint}); "
                              "rebuild it")

    @classmethod
    def build(cls, embeddings: np.ndarray, ids: Sequence[Any], payloads: Sequence[dict[str, Any]] | None = None,
              *, kind: str = "flat", fingerprint: str | None = None, hnsw_m: int = HNSW_M, nlist: int | None = None,
              nprobe: int = NPROBE, ef_search: int = EF_SEARCH) -> VectorIndex:
        """Index ``embeddings`` (``(n, dim)``) under unique JSON-serialisable ``ids``."""
        if kind not in KINDS:
            raise ConfigError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
        vectors = _matrix(embeddings, None, "embeddings")
        if len(vectors) == 0:
            raise DataError("cannot build an index from no embeddings")
        payloads = [{} for _ in ids] if payloads is None else list(payloads)
        if not len(vectors) == len(ids) == len(payloads):
            raise DataError(f"got {len(vectors)} embeddings, {len(ids)} ids and {len(payloads)} payloads")
        seen: set[str] = set()
        for i, key in enumerate(ids):
            token = json.dumps(key, sort_keys=True)
            if token in seen:
                raise DataError(f"duplicate id {key!r}", row=i, field="id")
            seen.add(token)
        return cls(_faiss_index(vectors, kind, hnsw_m, nlist), ids, payloads, kind=kind, fingerprint=fingerprint,
                   nprobe=nprobe, ef_search=ef_search)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[Hit]]:
        """The best ``min(k, len(self))`` hits for each query row, best first."""
        if k <= 0:
            raise ConfigError(f"k must be positive, got {k}")
        if len(self) == 0:
            raise DataError("the index is empty")
        matrix = _matrix(queries, self.dim, "queries")
        if isinstance(self.index, faiss.IndexIVF):
            self.index.nprobe = min(self.nprobe, self.index.nlist)
        elif isinstance(self.index, faiss.IndexHNSW):
            self.index.hnsw.efSearch = max(self.ef_search, k)
        scores, rows = self.index.search(matrix, min(k, len(self)))
        return [[Hit(self.ids[r], float(s), self.payloads[r]) for s, r in zip(srow, rrow, strict=True) if r >= 0]
                for srow, rrow in zip(scores, rows, strict=True)]

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "dim": self.dim, "kind": self.kind, "count": len(self),
                "fingerprint": self.fingerprint, "nprobe": self.nprobe, "ef_search": self.ef_search}

    def save(self, folder: str | Path) -> Path:
        """Write the index to ``folder`` atomically, replacing an index already there."""
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            with (tmp / RECORDS_FILE).open("w", encoding="utf-8") as f:
                for key, payload in zip(self.ids, self.payloads, strict=True):
                    f.write(json.dumps({"id": key, "payload": payload}, ensure_ascii=False) + "\n")
            (tmp / META_FILE).write_text(json.dumps(self.meta(), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> VectorIndex:
        """Read an index saved by :meth:`save`."""
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise DataError("not an index folder (no meta.json)", file=str(folder))
        try:
            meta = json.loads(meta_path.read_text())
            index = faiss.read_index(str(folder / INDEX_FILE))
            records = [json.loads(line) for line in (folder / RECORDS_FILE).read_text(encoding="utf-8").splitlines()]
        except (OSError, RuntimeError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read index: {exc}", file=str(folder)) from exc
        if meta.get("format") != FORMAT or index.d != meta.get("dim") or index.ntotal != len(records):
            raise DataError("index files disagree with meta.json (format, dim or count)", file=str(folder))
        return cls(index, [r["id"] for r in records], [r["payload"] for r in records], kind=meta["kind"],
                   fingerprint=meta.get("fingerprint"), nprobe=meta.get("nprobe", NPROBE),
                   ef_search=meta.get("ef_search", EF_SEARCH))
