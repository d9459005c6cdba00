"""Hub ids wherever a model folder goes, resolved offline from a cache laid out as the Hub lays it out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from huggingface_hub import constants
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.core.errors import ConfigError
from cocoa.core.hub import is_hub_id, resolve_model
from cocoa.inference import server
from cocoa.inference.embedder import Embedder
from cocoa.model.backbone import Backbone

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ID = "acme/tiny-embed"


@pytest.fixture
def hub_cache(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``model_dir`` published as ``acme/tiny-embed`` in a Hub cache, and the Hub offline."""
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-embed"
    shutil.copytree(model_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return repo / "snapshots" / COMMIT


def test_an_id_resolves_to_its_cached_snapshot(hub_cache: Path, model_dir: Path) -> None:
    assert resolve_model(REPO_ID) == hub_cache
    assert resolve_model(f"{REPO_ID}@{COMMIT}") == hub_cache  # pinned to a commit
    assert resolve_model(model_dir) == model_dir  # a folder that exists is always the folder
    assert is_hub_id(REPO_ID) and not is_hub_id(model_dir) and not is_hub_id("a/b/c")
    with pytest.raises(ConfigError, match=r"not in the Hugging Face cache .*offline mode is on"):
        resolve_model("acme/absent")
    with pytest.raises(ConfigError, match="no such model folder"):
        resolve_model("/no/such/folder")


def test_embedder_eval_serve_and_recipes_take_an_id(hub_cache: Path, model_dir: Path, mini_dir: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_id, by_folder = Embedder.from_pretrained(REPO_ID, device="cpu"), Embedder.from_pretrained(model_dir, device="cpu")
    np.testing.assert_array_equal(by_id.encode(["a red dress"]), by_folder.encode(["a red dress"]))
    assert by_id.fingerprint == by_folder.fingerprint

    result = CliRunner().invoke(app, ["eval", "--model", REPO_ID, "--data", str(mini_dir), "--out", str(tmp_path / "ev"),
                                      "--datasets", "FashionMNIST"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["fingerprint"] == by_folder.fingerprint

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, http: apps.append(app))
    server.serve(REPO_ID, torch_threads=1)
    with TestClient(apps[0]) as client:
        assert client.get("/v1/models").json()["data"][0]["id"] == REPO_ID

    backbone = Backbone.load(REPO_ID)
    assert torch.equal(backbone.model.get_input_embeddings().weight,
                       by_folder.encoder.backbone.model.get_input_embeddings().weight)
