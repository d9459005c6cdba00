"""cocoa.inference.cli: `cocoa encode`, `cocoa index build|search` and `cocoa serve`'s options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.inference import server
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.inference.corpus import Corpus
from cocoa.inference.corpus_encoder import encode_corpus
from cocoa.inference.embedder import Embedder
from cocoa.inference.index import VectorIndex
from cocoa.inference.server import create_app
from cocoa.model import packing
from tests.helpers import inference_app as _cli
from tests.helpers import unit_vectors


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


def test_cli_encode_npy_and_parquet(embedder: Embedder, model_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    rows = [{"id": "t", "text": "a sneaker next to a bag"}, {"id": 7, "image": "a.png"},
            {"text": "what is this?", "image": str(image_dir / "d.png")}]
    data = image_dir / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    want = embedder.encode([{"text": "a sneaker next to a bag"}, image_dir / "a.png",
                            {"text": "what is this?", "image": image_dir / "d.png"}], instruction="Go.")
    runner = CliRunner()
    for out in (tmp_path / "e.npy", tmp_path / "e.parquet"):
        result = runner.invoke(_cli(), ["encode", "--model", str(model_dir), "--input", str(data),
                                        "--out", str(out), "--batch-size", "2", "--instruction", "Go."])
        assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), want, atol=1e-6)
    table = pq.read_table(tmp_path / "e.parquet").to_pydict()
    assert table["id"] == ["t", "7", "3"]
    np.testing.assert_allclose(np.array(table["embedding"]), want, atol=1e-6)


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "invalid JSON"),
    ('["a"]', "must be a JSON object"),
    ('{"text": 5}', "field 'text'"),
    ('{"image": "missing.png"}', "image file not found"),
    ('{"id": 1}', "neither text nor image"),
    ('{"txt": "hello"}', "its keys ['txt'] are kept as payload"),
    ('{"text": "a\\ud800"}', "lone surrogate"),
    ('{"image": "thin.png"}', "aspect ratio over 200:1"),
    ('{"text": "b", "image": "cut.png"}', "image file is truncated"),  # the header reads, the pixels do not
])
@pytest.mark.parametrize("out", ["o.npy", "shards"])
def test_cli_encode_bad_rows_name_line(model_dir: Path, image_dir: Path, tmp_path: Path, line: str, message: str,
                                       out: str) -> None:
    data = tmp_path / "in.jsonl"
    Image.new("RGB", (2, 500)).save(tmp_path / "thin.png")
    (tmp_path / "cut.png").write_bytes((image_dir / "c.png").read_bytes()[:200])
    data.write_text('{"text": "fine"}\n' + line + "\n")
    result = CliRunner().invoke(_cli(), ["encode", "--model", str(model_dir), "--input", str(data),
                                         "--out", str(tmp_path / out)])
    assert result.exit_code == 1
    assert message in result.output and "line 2" in result.output and str(data) in result.output
    if "cut.png" in line:
        assert "field 'image'" in result.output and str(tmp_path / "cut.png") in result.output
    assert not (tmp_path / out).exists() or not list((tmp_path / out).glob("shard-*"))


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


def test_serve_cli_reads_the_api_key_from_a_file_or_the_environment(model_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from cocoa.cli import app

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: calls.append(args))
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    assert CliRunner().invoke(app, ["serve", "--model", str(model_dir), "--api-key-file", str(key_file)]).exit_code == 0
    assert CliRunner().invoke(app, ["serve", "--model", str(model_dir)], env={"COCOA_API_KEY": "env-key"}).exit_code == 0
    assert [call[4] for call in calls] == ["s3cret", "env-key"]
    both = CliRunner().invoke(app, ["serve", "--model", str(model_dir), "--api-key", "x", "--api-key-file",
                                    str(key_file)])
    assert both.exit_code != 0 and "give the API key once" in both.output
    (tmp_path / "empty").write_text("")
    empty = CliRunner().invoke(app, ["serve", "--model", str(model_dir), "--api-key-file", str(tmp_path / "empty")])
    assert empty.exit_code != 0 and "API key file is empty" in empty.output


def test_serve_cli_passes_the_torch_threads(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cocoa.cli import app

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: calls.append(kwargs))
    for extra in (["--torch-threads", "3"], []):
        result = CliRunner().invoke(app, ["serve", "--model", str(model_dir), *extra])
        assert result.exit_code == 0, result.output
    assert [call["torch_threads"] for call in calls] == [3, None]
