"""cocoa.core.matryoshka: one truncation on every path: the encode API, `cocoa encode|index`, the server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cocoa.core.errors import ConfigError
from cocoa.inference.cli import encode, index_app
from cocoa.inference.embedder import Embedder
from cocoa.inference.index import VectorIndex
from cocoa.inference.server import create_app
from tests.helpers import MATRYOSHKA_WIDTHS as DIMS
from tests.helpers import TINY_HIDDEN as HIDDEN
from tests.helpers import unit_rows


@pytest.fixture(scope="module")
def embedder(matryoshka_dir: Path) -> Embedder:
    return Embedder.from_pretrained(matryoshka_dir, device="cpu")


TEXTS = ["a red dress", "an ankle boot", "a sneaker next to a bag", "a white background"]


def test_encode_truncates_and_renormalises(embedder: Embedder, image_dir: Path) -> None:
    inputs = [*TEXTS, image_dir / "a.png"]
    full = embedder.encode(inputs)
    assert embedder.dims == (*DIMS, HIDDEN)
    for width in DIMS:
        got = embedder.encode(inputs, dim=width)
        assert got.shape == (len(inputs), width) and got.dtype == np.float32
        np.testing.assert_allclose(got, unit_rows(full[:, :width]), atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(embedder.encode(inputs, dim=HIDDEN), full)
    assert embedder.encode([], dim=32).shape == (0, 32)
    with pytest.raises(ConfigError, match="dim=50 is not supported by this model; choose one of 32, 64, 96"):
        embedder.encode(TEXTS, dim=50)


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("encode")(encode)
    app.add_typer(index_app, name="index")
    return app


def test_cli_encode_index_and_search_use_the_same_truncation(embedder: Embedder, matryoshka_dir: Path,
                                                            tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": t, "text": t}) + "\n" for t in TEXTS))
    runner, model = CliRunner(), ["--model", str(matryoshka_dir)]
    result = runner.invoke(_cli(), ["encode", *model, "--input", str(rows), "--out", str(tmp_path / "v.npy"),
                                    "--dim", "32"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), embedder.encode(TEXTS, dim=32), atol=1e-6)
    bad = runner.invoke(_cli(), ["encode", *model, "--input", str(rows), "--out", str(tmp_path / "w.npy"),
                                 "--dim", "50"])
    assert bad.exit_code == 1 and "dim=50 is not supported" in bad.output

    result = runner.invoke(_cli(), ["index", "build", *model, "--input", str(rows), "--out", str(tmp_path / "idx"),
                                    "--dim", "32"])
    assert result.exit_code == 0, result.output
    index = VectorIndex.load(tmp_path / "idx")
    assert index.dim == 32
    result = runner.invoke(_cli(), ["index", "search", *model, "--index", str(tmp_path / "idx"),
                                    "--query", "red dress", "-k", "4", "--json"])
    assert result.exit_code == 0, result.output
    want = index.search(embedder.encode("red dress", dim=32), 4)[0]
    got = json.loads(result.stdout)
    assert [h["id"] for h in got] == [h.id for h in want]
    np.testing.assert_allclose([h["score"] for h in got], [h.score for h in want], atol=1e-5)


def test_server_dimensions_parameter(embedder: Embedder) -> None:
    index = VectorIndex.build(embedder.encode(TEXTS, dim=32), TEXTS, fingerprint=embedder.fingerprint)
    app = create_app(embedder, model_name="m", index=index)
    with TestClient(app) as client:
        for width in (*DIMS, None):
            body = {"model": "m", "input": TEXTS, **({} if width is None else {"dimensions": width})}
            response = client.post("/v1/embeddings", json=body)
            assert response.status_code == 200, response.text
            got = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
            np.testing.assert_allclose(got, embedder.encode(TEXTS, dim=width), atol=1e-6)
        for bad in (50, 0, HIDDEN + 1):
            response = client.post("/v1/embeddings", json={"model": "m", "input": "x", "dimensions": bad})
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["code"] == "unsupported_dimensions" and "choose one of 32, 64, 96" in error["message"]
            assert error["message"].startswith(f"dimensions={bad} ")
        hits = client.post("/v1/search", json={"text": "red dress", "k": 2}).json()["data"]
        want = index.search(embedder.encode("red dress", dim=32), 2)[0]
        assert [h["id"] for h in hits] == [h.id for h in want]
        assert client.get("/health").json()["dimensions"] == [*DIMS, HIDDEN]
    odd = VectorIndex.build(embedder.encode(TEXTS)[:, :40], TEXTS)
    with pytest.raises(ConfigError, match="index has dim 40"):
        create_app(embedder, model_name="m", index=odd)
