"""cocoa.evaluate.encoder: an evaluation with packed rows scores as the padded one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.evaluate.cache import EmbeddingCache
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
