"""`cocoa index build --shards`: streamed into flat, HNSW, IVF and IVF-PQ indexes that search as the
in-memory build does, with recall@10 measured against exact search, loaded by the server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cocoa.core.errors import ConfigError, DataError
from cocoa.inference.corpus import Corpus
from cocoa.inference.corpus_encoder import encode_corpus
from cocoa.inference.embedder import Embedder
from cocoa.inference.index import (
    MIN_PQ_TRAIN,
    OFFSETS_FILE,
    VectorIndex,
    _check_unique,
    build_from_shards,
    recall_at_k,
)
from cocoa.inference.server import create_app
from cocoa.inference.shards import ShardedOutput, ShardPlan, ShardReader
from tests.inference.test_index import _cli

DIM, COUNT, SHARD = 32, MIN_PQ_TRAIN + 500, 2000


def clustered(count: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 fixed centres, as embeddings of a real collection cluster (``seed`` draws the points)."""
    centres = np.random.default_rng(dim).standard_normal((50, dim))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, 50, count)] + 0.4 * rng.standard_normal((count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def write_shards(folder: Path, vectors: np.ndarray, ids: list[str] | None = None) -> ShardReader:
    ids = ids or [f"v{i}" for i in range(len(vectors))]
    plan = ShardPlan("fp", vectors.shape[1], SHARD, {"path": "synthetic", "kind": "jsonl", "rows": len(vectors)})
    output = ShardedOutput(folder, plan)
    output.start()
    for k in range(plan.num_shards):
        rows = slice(plan.first_row(k), plan.first_row(k) + plan.shard_rows(k))
        output.write(k, ids[rows], [{"n": i} for i in range(len(vectors))][rows], vectors[rows])
    output.finish()
    return ShardReader(folder)


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


def test_encode_then_index_then_serve(model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"id": f"d{i}", "text": f"a note about item {i}"}) + "\n" for i in range(40)))
    embedder = Embedder.from_pretrained(model_dir, device="cpu")
    encode_corpus(embedder, Corpus(data), tmp_path / "shards", shard_size=16, show_progress=False)
    result = CliRunner().invoke(_cli(), ["index", "build", "--shards", str(tmp_path / "shards"),
                                         "--out", str(tmp_path / "idx"), "--kind", "hnsw"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "indexed 40 rows (hnsw)" in output and "recall@10 against exact search 1.000" in output
    index = VectorIndex.load(tmp_path / "idx")
    with TestClient(create_app(embedder, model_name="m", index=index)) as client:
        body = client.post("/v1/search", json={"text": "a note about item 7", "k": 3}).json()
    want = index.search(embedder.encode("a note about item 7"), 3)[0]
    assert [hit["id"] for hit in body["data"]] == [hit.id for hit in want]
    assert body["data"][0]["payload"] == {"id": want[0].id, "text": want[0].payload["text"]}
    bad = CliRunner().invoke(_cli(), ["index", "build", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "--shards DIR, or --input FILE with --model" in bad.output


def test_a_flipped_byte_in_any_shard_is_caught_with_the_shard_named(tmp_path: Path) -> None:
    vectors = clustered(300, 8)
    reader = write_shards(tmp_path / "ok", vectors[:250])
    assert all("sha256" in entry for entry in reader.manifest["shards"])
    assert np.array_equal(np.concatenate([s.vectors for s in reader]), vectors[:250])
    rng = np.random.default_rng(0)
    for trial in range(12):
        folder = tmp_path / f"flip{trial}"
        write_shards(folder, vectors[:250])
        shard = folder / "shard-00000.parquet"
        data = bytearray(shard.read_bytes())
        at = int(rng.integers(0, len(data)))
        data[at] ^= 1 << int(rng.integers(0, 8))
        shard.write_bytes(bytes(data))
        with pytest.raises(DataError, match="shard is corrupt") as caught:
            list(ShardReader(folder))
        assert "shard-00000.parquet" in str(caught.value)
        with pytest.raises(DataError, match="shard is corrupt"):
            build_from_shards(ShardReader(folder), tmp_path / f"index{trial}", kind="flat")


def test_a_shard_changed_before_the_folder_is_finished_is_not_checksummed_as_good(tmp_path: Path) -> None:
    vectors = clustered(300, 8)
    plan = ShardPlan("fp", 8, 100, {"path": "synthetic", "kind": "jsonl", "rows": 300})
    output = ShardedOutput(tmp_path, plan)
    output.start()
    for k in range(plan.num_shards):
        rows = slice(plan.first_row(k), plan.first_row(k) + plan.shard_rows(k))
        output.write(k, [f"v{i}" for i in range(300)][rows], [{}] * plan.shard_rows(k), vectors[rows])
    shard = tmp_path / "shard-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="changed since it was written") as caught:
        output.finish()
    assert "shard-00001.parquet" in str(caught.value)
    assert not (tmp_path / "manifest.json").read_text().count("sha256")
