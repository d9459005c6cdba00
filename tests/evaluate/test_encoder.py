"""`cocoa eval --pack-tokens` and `cocoa encode --pack-tokens`: packed batches, the padded embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.evaluate.cache import EmbeddingCache
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.model import packing


def test_packed_evaluation_scores_as_padded(model_dir: Path, mini_dir: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    run = packing.packed_pool_states
    monkeypatch.setattr(packing, "packed_pool_states", lambda *a, **k: calls.append(1) or run(*a, **k))
    names = "FashionMNIST,VideoEvent,SceneGrounding,SceneT2I"
    for name, extra in (("padded", []), ("packed", ["--pack-tokens", "600"])):
        result = CliRunner().invoke(app, ["eval", "--model", str(model_dir), "--data", str(mini_dir), "--out",
                                          str(tmp_path / name), "--datasets", names, "--batch-size", "8", *extra])
        assert result.exit_code == 0, result.output
    assert calls  # the packed run packed
    padded, packed = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("padded", "packed"))
    assert padded["fingerprint"] == packed["fingerprint"]
    for name in names.split(","):
        assert padded["datasets"][name]["score"] == packed["datasets"][name]["score"], name
    a, b = (EmbeddingCache(tmp_path / n / "cache", padded["fingerprint"]) for n in ("padded", "packed"))
    keys = sorted(a._index)
    np.testing.assert_allclose(b.get(keys), a.get(keys), atol=2e-5)


def test_packed_encoding_gives_the_padded_vectors(model_dir: Path, image_dir: Path, tmp_path: Path,
                                                 monkeypatch) -> None:
    calls: list[int] = []
    run = packing.packed_pool_states
    monkeypatch.setattr(packing, "packed_pool_states", lambda *a, **k: calls.append(1) or run(*a, **k))
    rows = [{"text": "a caption " * (1 + i % 6)} for i in range(20)] + [{"image": f"{n}.png"} for n in "abcd"]
    data = image_dir / "packed-rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, extra in (("padded.npy", []), ("packed.npy", ["--pack-tokens", "256"])):
        before = len(calls)
        result = CliRunner().invoke(app, ["encode", "--model", str(model_dir), "--input", str(data), "--out",
                                          str(tmp_path / name), "--batch-size", "8", *extra])
        assert result.exit_code == 0, result.output
        assert (len(calls) > before) == bool(extra), f"{name}: packed only when --pack-tokens is given"
    np.testing.assert_allclose(np.load(tmp_path / "packed.npy"), np.load(tmp_path / "padded.npy"), atol=2e-5)
    assert BatchEncoder.from_pretrained(model_dir, device="cpu", pack_tokens=256).pack_tokens == 256
