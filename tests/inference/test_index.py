"""cocoa.inference.index: the FAISS index in memory, saved and checked, and built from shards."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from cocoa.core.errors import ConfigError, DataError
from cocoa.inference.index import (
    MIN_PQ_TRAIN,
    OFFSETS_FILE,
    Records,
    VectorIndex,
    _check_unique,
    build_from_shards,
    recall_at_k,
)
from cocoa.inference.shards import ShardReader
from tests.helpers import clustered, unit_vectors, write_shards


def test_flat_search_is_exact_top_k() -> None:
    base, queries = unit_vectors(300), unit_vectors(20, seed=1)
    ids = [f"doc{i}" for i in range(300)]
    index = VectorIndex.build(base, ids, [{"n": i} for i in range(300)])
    hits = index.search(queries, k=7)
    scores = queries @ base.T
    for q, row in enumerate(hits):
        want = np.argsort(-scores[q], kind="stable")[:7]
        assert [h.id for h in row] == [ids[i] for i in want]
        np.testing.assert_allclose([h.score for h in row], scores[q, want], atol=1e-5)
        assert [h.payload["n"] for h in row] == want.tolist()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_find_exact_matches(kind: str) -> None:
    base = unit_vectors(500)
    index = VectorIndex.build(base, list(range(500)), kind=kind)
    hits = index.search(base[:50], k=3)
    recall = np.mean([row[0].id == i for i, row in enumerate(hits)])
    assert recall >= 0.95


def test_k_larger_than_index_returns_all() -> None:
    index = VectorIndex.build(unit_vectors(3), ["a", "b", "c"])
    assert sorted(h.id for h in index.search(unit_vectors(1, seed=2), k=10)[0]) == ["a", "b", "c"]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(tmp_path: Path, kind: str) -> None:
    base, queries = unit_vectors(200), unit_vectors(5, seed=3)
    ids = [f"id{i}" if i % 2 else i for i in range(200)]
    payloads = [{"text": f"row {i}", "nested": {"i": [i]}} for i in range(200)]
    index = VectorIndex.build(base, ids, payloads, kind=kind, fingerprint="abc123")
    folder = tmp_path / "idx"
    index.save(folder)
    VectorIndex.build(base[:10], ids[:10], kind=kind).save(tmp_path / "other")
    index.save(folder)  # overwriting an index replaces it whole
    loaded = VectorIndex.load(folder)
    assert (loaded.dim, len(loaded), loaded.kind, loaded.fingerprint) == (32, 200, kind, "abc123")
    assert json.loads((folder / "meta.json").read_text())["count"] == 200
    assert loaded.search(queries, 5) == index.search(queries, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "other"]


def test_errors(tmp_path: Path) -> None:
    index = VectorIndex.build(unit_vectors(10), list(range(10)))
    with pytest.raises(DataError, match="dim 16 but the index has dim 32"):
        index.search(unit_vectors(2, dim=16), 3)
    with pytest.raises(ConfigError, match="k must be positive"):
        index.search(unit_vectors(1), 0)
    with pytest.raises(DataError, match="no embeddings"):
        VectorIndex.build(np.zeros((0, 8), np.float32), [])
    with pytest.raises(DataError, match="index is empty"):
        VectorIndex(faiss.IndexFlatIP(8), Records([], []), kind="flat").search(np.ones((1, 8)), 1)
    with pytest.raises(DataError, match="duplicate id 'a'"):
        VectorIndex.build(unit_vectors(2), ["a", "a"])
    with pytest.raises(DataError, match="2 embeddings, 3 ids"):
        VectorIndex.build(unit_vectors(2), ["a", "b", "c"])
    with pytest.raises(ConfigError, match="one of flat, hnsw, ivf"):
        VectorIndex.build(unit_vectors(2), ["a", "b"], kind="lsh")
    with pytest.raises(DataError, match="NaN"):
        VectorIndex.build(np.full((1, 4), np.nan), ["a"])
    with pytest.raises(DataError, match="not an index folder"):
        VectorIndex.load(tmp_path)


@pytest.mark.parametrize("name", ["index.faiss", "records.jsonl", "records.offsets.npy"])
def test_a_flipped_byte_in_a_saved_index_is_caught_with_the_file_named(tmp_path: Path, name: str) -> None:
    folder = VectorIndex.build(unit_vectors(50), [f"doc{i}" for i in range(50)],
                               [{"text": f"row {i}"} for i in range(50)]).save(tmp_path / "idx")
    assert set(json.loads((folder / "meta.json").read_text())["sha256"]) == {
        "index.faiss", "records.jsonl", "records.offsets.npy"}
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="changed since the index was built") as caught:
        VectorIndex.load(folder)
    assert str(path) in str(caught.value)
    if name == "records.jsonl":  # a changed payload still loads when the check is turned off
        assert len(VectorIndex.load(folder, verify=False)) == 50


DIM, COUNT = 32, MIN_PQ_TRAIN + 500


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[ShardReader, np.ndarray]:
    vectors = clustered(COUNT, DIM)
    return write_shards(tmp_path_factory.mktemp("shards"), vectors), vectors


def test_flat_from_shards_searches_as_the_in_memory_index(shards: tuple[ShardReader, np.ndarray],
                                                           tmp_path: Path) -> None:
    reader, vectors = shards
    built = build_from_shards(reader, tmp_path / "flat", kind="flat", show_progress=False)
    memory = VectorIndex.build(vectors, [f"v{i}" for i in range(COUNT)], [{"n": i} for i in range(COUNT)])
    queries = clustered(5, DIM, seed=1)
    assert built.search(queries, 7) == memory.search(queries, 7)
    assert built.fingerprint == "fp" and built.recall is None and (tmp_path / "flat" / OFFSETS_FILE).is_file()
    assert built.records[COUNT - 1] == (f"v{COUNT - 1}", {"n": COUNT - 1})
    (tmp_path / "flat" / "records.jsonl").write_bytes((tmp_path / "flat" / "records.jsonl").read_bytes()
                                                      .replace(b'"n": 3}', b'"n": 4}', 1))
    with pytest.raises(DataError, match=r"changed since the index was built.*records\.jsonl"):
        VectorIndex.load(tmp_path / "flat")


@pytest.mark.parametrize(("kind", "floor"), [("hnsw", 0.95), ("ivf", 0.9), ("ivfpq", 0.4)])
def test_approximate_kinds_record_their_recall(shards: tuple[ShardReader, np.ndarray], tmp_path: Path,
                                               kind: str, floor: float) -> None:
    reader, vectors = shards
    built = build_from_shards(reader, tmp_path / kind, kind=kind, recall_queries=200, show_progress=False)
    assert len(built) == COUNT and floor <= built.recall <= 1.0
    assert json.loads((tmp_path / kind / "meta.json").read_text())["recall@10"] == built.recall
    queries = clustered(100, DIM, seed=2)  # recall on fresh queries is close to the recorded one
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = built.search_rows(queries, 10)[1]
    assert abs(recall_at_k(found, exact) - built.recall) < 0.15
    assert built.search(vectors[:1], 1)[0][0].id == "v0" or kind == "ivfpq"


def test_recall_at_k_counts_shared_rows() -> None:
    assert recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [7, 8, 9]])) == pytest.approx(1 / 3)


def test_bad_shards_and_settings_are_refused(tmp_path: Path) -> None:
    vectors = clustered(300, 8)
    with pytest.raises(DataError, match="duplicate id 'same'") as caught:
        build_from_shards(write_shards(tmp_path / "dup", vectors, ["same", "same"] + [f"v{i}" for i in range(298)]), tmp_path / "i",
                          show_progress=False)
    assert "row 2" in str(caught.value) and not (tmp_path / "i").exists()
    reader = write_shards(tmp_path / "ok", vectors)
    with pytest.raises(ConfigError, match="at least 9984 vectors"):
        build_from_shards(reader, tmp_path / "i", kind="ivfpq", show_progress=False)
    with pytest.raises(ConfigError, match="pq_m must divide"):
        VectorIndex.build(clustered(MIN_PQ_TRAIN, 8), list(range(MIN_PQ_TRAIN)), kind="ivfpq", pq_m=3)
    with pytest.raises(ConfigError, match="nlist must be between"):
        build_from_shards(reader, tmp_path / "i", kind="ivf", nlist=301, show_progress=False)
    with pytest.raises(ConfigError, match="would replace the shards"):
        build_from_shards(reader, tmp_path, show_progress=False)
    one = build_from_shards(write_shards(tmp_path / "one", vectors[:1]), tmp_path / "i1", kind="hnsw",
                            show_progress=False)
    assert len(one) == 1 and one.recall is None
    _check_unique(np.array([5, 7, 5], dtype=np.uint64), ["a", "b", "c"].__getitem__)  # a collision, not a duplicate
    (tmp_path / "ok" / "shard-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="shard is corrupt"):
        build_from_shards(reader, tmp_path / "i", show_progress=False)
