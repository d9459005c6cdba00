"""The FAISS index wrapper and `cocoa index build|search`."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cocoa.core.errors import ConfigError, DataError
from cocoa.inference.cli import index_app
from cocoa.inference.embedder import Embedder
from cocoa.inference.index import Records, VectorIndex


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


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


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(index_app, name="index")
    return app


def test_cli_build_and_search(model_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    rows = [{"id": "dress", "text": "a photo of a red dress on a white background"},
            {"id": "boot", "text": "an ankle boot", "extra": 1},
            {"id": "pic", "image": "a.png"},
            {"id": "both", "text": "a sneaker", "image": "c.png"}]
    data = image_dir / "index_rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runner, out = CliRunner(), tmp_path / "idx"
    result = runner.invoke(_cli(), ["index", "build", "--model", str(model_dir), "--input", str(data),
                                    "--out", str(out), "--kind", "flat"])
    assert result.exit_code == 0, result.output
    embedder = Embedder.from_pretrained(model_dir, device="cpu")
    index = VectorIndex.load(out)
    assert index.fingerprint == embedder.fingerprint and index.records[1][1] == rows[1]

    result = runner.invoke(_cli(), ["index", "search", "--model", str(model_dir), "--index", str(out),
                                    "--query", "red dress", "--image", str(image_dir / "a.png"), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    want = index.search(embedder.encode({"text": "red dress", "image": image_dir / "a.png"}), 3)[0]
    assert [(h["id"], h["payload"]) for h in got] == [(h.id, h.payload) for h in want]
    np.testing.assert_allclose([h["score"] for h in got], [h.score for h in want], atol=1e-5)

    table = runner.invoke(_cli(), ["index", "search", "--model", str(model_dir), "--index", str(out),
                                   "--query", "boot"])
    assert table.exit_code == 0 and "score" in table.output and "dress" in table.output


def test_cli_search_refuses_other_model(model_dir: Path, tmp_path: Path) -> None:
    VectorIndex.build(unit_vectors(2, dim=96), ["a", "b"], fingerprint="another").save(tmp_path / "idx")
    result = CliRunner().invoke(_cli(), ["index", "search", "--model", str(model_dir), "--index",
                                         str(tmp_path / "idx"), "--query", "x"])
    assert result.exit_code == 1 and "built with model another" in result.output


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
