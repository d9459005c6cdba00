"""cocoa.inference.server: vectors, search and health, auth, request limits, bad input as 4xx."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from cocoa.core.errors import ConfigError
from cocoa.data.items import IMAGE_PLACEHOLDER, Item
from cocoa.inference import server
from cocoa.inference.embedder import Embedder
from cocoa.inference.http_protocol import EnvelopeHTTPProtocol
from cocoa.inference.index import VectorIndex
from cocoa.inference.server import Guard, create_app, model_threads
from tests.helpers import SERVED_MODEL as MODEL
from tests.helpers import response_vectors as vectors


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def png_url(size: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), "white").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_embeddings_equal_encode_items(client: TestClient, embedder: Embedder, image_dir: Path) -> None:
    images = {n: Image.open(image_dir / f"{n}.png").convert("RGB") for n in "acd"}
    body_input = ["a photo of a red dress on a white background " * 5, {"image": data_url(image_dir / "a.png")},
                  {"text": "what is this?", "image": data_url(image_dir / "c.png")}, "boot",
                  {"text": f"x {IMAGE_PLACEHOLDER} y", "image": data_url(image_dir / "d.png")}]
    items = [Item(body_input[0]), Item("", images["a"]), Item("what is this?", images["c"]), Item("boot"),
             Item(f"x {IMAGE_PLACEHOLDER} y", images["d"])]
    want = embedder.encoder.encode_items(items)
    for fmt in ("float", "base64"):
        response = client.post("/v1/embeddings", json={"model": MODEL, "input": body_input, "encoding_format": fmt})
        np.testing.assert_allclose(vectors(response), want, atol=1e-6)
        body = response.json()
        assert body["object"] == "list" and body["model"] == MODEL
        assert [d["index"] for d in body["data"]] == list(range(5))
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == sum(
            len(embedder.encoder.preprocessor.embedding_sequence(i)) for i in items)
        assert response.headers["content-type"] == "application/json"
    single = client.post("/v1/embeddings", json={"model": MODEL, "input": "boot"})
    np.testing.assert_allclose(vectors(single), want[3:4], atol=1e-6)
    instructed = client.post("/v1/embeddings", json={"model": MODEL, "input": ["a cat"], "instruction": "Find."})
    np.testing.assert_allclose(vectors(instructed), embedder.encode("a cat", instruction="Find."), atol=1e-6)


def test_search_and_health(client: TestClient, embedder: Embedder, index: VectorIndex, image_dir: Path) -> None:
    response = client.post("/v1/search", json={"text": "red dress", "image": data_url(image_dir / "b.png"), "k": 2})
    assert response.status_code == 200, response.text
    want = index.search(embedder.encode({"text": "red dress", "image": image_dir / "b.png"}), 2)[0]
    got = response.json()["data"]
    assert [(h["id"], h["payload"]) for h in got] == [(h.id, h.payload) for h in want]
    np.testing.assert_allclose([h["score"] for h in got], [h.score for h in want], atol=1e-5)
    health = client.get("/health").json()
    assert health["model"] == MODEL and health["dim"] == embedder.dim and health["index"]["count"] == 4
    assert health["batching"]["encode_calls"] >= 1 and health["batching"]["items"] >= health["batching"]["encode_calls"]


def test_serve_leaves_one_core_to_the_event_loop_unless_told(model_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    def run(app: Any, host: str, port: int, http: type) -> None:
        assert http is EnvelopeHTTPProtocol
        seen.append(torch.get_num_threads())

    monkeypatch.setattr(uvicorn, "run", run)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        server.serve(model_dir)
        server.serve(model_dir, torch_threads=1)
        torch.set_num_threads(1)
        server.serve(model_dir)
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 1, 1]
    with pytest.raises(ConfigError, match="torch_threads"):
        model_threads(0)


@pytest.mark.parametrize("key", ["", "   ", "\t"])
def test_an_empty_or_blank_key_from_the_environment_is_refused_before_the_model_loads(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch, embedder: Embedder, key: str) -> None:
    from cocoa.cli import app

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded (and the server would start) with an empty key")

    monkeypatch.setattr(server.Embedder, "from_pretrained", never)
    monkeypatch.setattr("uvicorn.run", never)
    result = CliRunner().invoke(app, ["serve", "--model", str(model_dir)], env={"COCOA_API_KEY": key})
    assert result.exit_code == 1 and "the API key is empty" in result.output, result.output
    with pytest.raises(ConfigError, match="the API key is empty"):
        server.create_app(embedder, model_name="m", api_key=key)


BAD_REQUESTS = [
    ({"model": MODEL, "input": [{"image": "data:image/png;base64,@@@not-base64"}]}, 400, "not valid base64"),
    ({"model": MODEL, "input": [{"image": "data:image/png;base64," + base64.b64encode(b"hello").decode()}]},
     400, "not a readable image"),
    ({"model": MODEL, "input": [{"image": "https://example.com/cat.png"}]}, 400, "not fetched"),
    ({"model": MODEL, "input": [{"image": "data:image/png," + "A" * 8}]}, 400, "must look like"),
    ({"model": MODEL, "input": [{"image": "data:text/plain;base64," + base64.b64encode(b"hello").decode()}]},
     400, "must look like data:image/png;base64"),
    ({"model": MODEL, "input": [{"image": "data:image/png;base64," + "A" * 140_000}]}, 413, "over the limit"),
    ({"model": MODEL, "input": [{"image": png_url(300)}]}, 413, "300x300 = 90000 pixels, over the limit of 40000"),
    ({"model": MODEL, "input": []}, 400, "input is empty"),
    ({"model": MODEL, "input": ""}, 400, "input[0]: input is empty"),
    ({"model": MODEL, "input": [{"text": " "}]}, 400, "input is empty"),
    ({"model": MODEL, "input": ["x"] * 9}, 413, "9 items, over the limit of 8"),
    ({"model": MODEL, "input": ["x" * 1001]}, 413, "over the limit of 1000"),
    ({"model": MODEL, "input": [f"{IMAGE_PLACEHOLDER} text only"]}, 400, "placeholder"),
    ({"model": "gpt-4", "input": "hi"}, 404, "model 'gpt-4' not found"),
    ({"model": MODEL, "input": "hi", "encoding_format": "int8"}, 422, "encoding_format"),
    ({"input": "hi"}, 422, "model: Field required"),
    ({"model": MODEL, "input": [{"txt": "hi"}]}, 422, "invalid request"),
    ({"model": MODEL, "input": [3]}, 422, "invalid request"),
    ({"model": MODEL, "input": [{"image": "data:image/png;base64," + base64.b64encode(b"").decode() + "AA=="}]},
     400, "not a readable image"),
    ({"model": MODEL, "input": "hi", "dimensions": True}, 422, "dimensions"),
    ({"model": MODEL, "input": "hi", "dimensions": "32"}, 422, "dimensions"),
    ({"model": MODEL, "input": "hi", "instruction": "x" * 1001}, 413, "instruction: text has 1001 characters"),
]


def png_of(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


UNEMBEDDABLE = [  # raw JSON bodies: the inputs the processor or the tokenizer would fail on
    (b'{"model": "tiny-cocoa", "input": [{"image": "%s"}]}' % png_of(402, 2).encode(), "aspect ratio over 200:1"),
    (b'{"model": "tiny-cocoa", "input": [{"image": "%s"}]}' % png_of(1, 201).encode(), "aspect ratio over 200:1"),
    (b'{"model": "tiny-cocoa", "input": "\\ud800abc"}', "lone surrogate"),
    (b'{"model": "tiny-cocoa", "input": "abc", "instruction": "\\udfff"}', "instruction: text is not valid"),
    (b'{"model": "tiny-cocoa", "input": [{"text": "a\\udc80"}]}', "input[0]: text is not valid Unicode"),
]


@pytest.mark.parametrize(("body", "message"), UNEMBEDDABLE)
def test_inputs_the_model_cannot_take_are_400_on_a_connection_that_stays_open(client: TestClient, body: bytes,
                                                                             message: str) -> None:
    response = client.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
    assert response.headers.get("connection") != "close"
    assert client.post("/v1/embeddings", json={"model": MODEL, "input": "still fine"}).status_code == 200


def test_search_refuses_the_same_inputs(client: TestClient) -> None:
    for body, message in ((orjson.dumps({"text": "x", "image": png_of(2, 500)}), "aspect ratio"),
                          (b'{"text": "\\ud800"}', "lone surrogate")):
        response = client.post("/v1/search", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and message in response.json()["error"]["message"], response.text


def test_every_http_error_uses_the_error_envelope(client: TestClient) -> None:
    bad_utf8 = client.post("/v1/embeddings", content=b'{"model": "\xff\xfe"}',
                           headers={"content-type": "application/json"})
    deep = client.post("/v1/embeddings", content=b"[" * 100_000, headers={"content-type": "application/json"})
    wrong_method = client.get("/v1/embeddings")
    missing = client.get("/nowhere")
    for response, status in ((bad_utf8, 400), (deep, 400), (wrong_method, 405), (missing, 404)):
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"} and response.json()["error"]["code"], response.text
    assert wrong_method.headers.get("allow") == "POST"
    schema = client.get("/openapi.json").json()["paths"]["/v1/embeddings"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "422"} <= set(schema)
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_bad_input_gets_4xx_and_server_keeps_serving(client: TestClient, body: dict[str, Any], status: int,
                                                     message: str) -> None:
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    assert "object at 0x" not in response.text, "no Python object reprs in errors"
    assert client.post("/v1/embeddings", json={"model": MODEL, "input": "still fine"}).status_code == 200


def test_malformed_json_and_search_errors(client: TestClient, embedder: Embedder) -> None:
    response = client.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["error"]["message"]
    assert client.post("/v1/search", json={"k": 3}).status_code == 400
    assert client.post("/v1/search", json={"text": "x", "k": 0}).status_code == 422
    assert client.post("/v1/search", json={"text": "x", "model": "other"}).status_code == 404
    with TestClient(create_app(embedder, model_name=MODEL)) as no_index:
        response = no_index.post("/v1/search", json={"text": "x"})
        assert response.status_code == 404 and "no index" in response.json()["error"]["message"]
    with TestClient(create_app(embedder, model_name=MODEL, max_body_bytes=100)) as small:
        response = small.post("/v1/embeddings", json={"model": MODEL, "input": "x" * 200})
        assert response.status_code == 413 and "request body" in response.json()["error"]["message"]


def test_bearer_auth(embedder: Embedder, index: VectorIndex) -> None:
    body = {"model": MODEL, "input": "hello"}
    key = {"Authorization": "Bearer s3cret"}
    with TestClient(create_app(embedder, model_name=MODEL, index=index, api_key="s3cret")) as client:
        missing = client.post("/v1/embeddings", json=body)
        assert missing.status_code == 401 and "missing API key" in missing.json()["error"]["message"]
        wrong = client.post("/v1/search", json={"text": "x"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "incorrect API key" in wrong.json()["error"]["message"]
        assert client.get("/health").json() == {"status": "ok"}, "liveness only, without the key"
        assert client.get("/health", headers=key).json()["fingerprint"] == embedder.fingerprint
        for path in ("/openapi.json", "/docs", "/v1/models"):
            assert client.get(path).status_code == 401, path
        assert client.get("/v1/models", headers=key).status_code == 200
        ok = client.post("/v1/embeddings", json=body, headers=key)
        np.testing.assert_allclose(vectors(ok), embedder.encode("hello"), atol=1e-6)


async def _run_guard(guard: Guard, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """Send ``chunks`` as a body through ``guard``; returns the status sent and how many chunks were read."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/embeddings", "headers": headers, "query_string": b""}
    await guard(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), read


def test_the_body_limit_counts_chunked_bytes_and_auth_comes_before_the_body(embedder: Embedder) -> None:
    import asyncio

    app = create_app(embedder, model_name=MODEL, max_body_bytes=1000, api_key="s3cret")
    guard = app.build_middleware_stack()
    while not isinstance(guard, Guard):
        guard = guard.app
    chunks = [b"x" * 300] * 100  # 30 kB, no Content-Length: a chunked upload
    key = [(b"authorization", b"Bearer s3cret"), (b"content-type", b"application/json")]
    status, read = asyncio.run(_run_guard(guard, chunks, key))
    assert status == 413 and read == 4, "stopped at the first chunk past 1000 bytes"
    status, read = asyncio.run(_run_guard(guard, chunks, [(b"content-type", b"application/json")]))
    assert status == 401 and read == 0, "no byte of the body is read without the key"
    small = [b'{"model": "tiny-cocoa", ', b'"input": "chunked"}']
    status, read = asyncio.run(_run_guard(guard, small, key))
    assert status == 200 and read == 2


def test_index_from_another_model_is_refused(embedder: Embedder) -> None:
    other = VectorIndex.build(np.eye(embedder.dim, dtype=np.float32)[:2], ["a", "b"], fingerprint="other")
    with pytest.raises(ConfigError, match="rebuild it"):
        create_app(embedder, model_name=MODEL, index=other)


def test_a_request_over_the_pixel_budget_is_refused_before_any_image_is_decoded(
        embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(embedder, model_name=MODEL, max_request_pixels=3 * 200 * 200)
    decoded: list[int] = []
    real = server.open_image
    monkeypatch.setattr(server, "open_image", lambda *args, **kwargs: decoded.append(1) or real(*args, **kwargs))
    with TestClient(app) as client:
        over = client.post("/v1/embeddings", json={"model": MODEL, "input": [{"image": png_url(200)}] * 4})
        assert over.status_code == 413 and decoded == []
        assert "160000 pixels in all, over the budget of 120000" in over.json()["error"]["message"]
        assert client.post("/v1/embeddings", json={"model": MODEL, "input": [{"image": png_url(200)}] * 3}
                           ).status_code == 200


def test_a_large_image_is_decoded_at_a_reduced_scale(embedder: Embedder) -> None:
    keep = server.KEEP_FACTOR * embedder.image_pixels
    side = int((keep * 9) ** 0.5)  # nine times what is kept
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.new("RGB", (side, side), "white").save(buf, format=fmt)
        limits = server.server_settings(keep_pixels=keep)
        image = server.decode_image("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), limits, "x")
        assert image.width * image.height <= 4 * keep and image.width < side, fmt
    small = server.decode_image(png_url(20), server.server_settings(keep_pixels=keep), "x")
    assert small.size == (20, 20), "images within the budget are kept as they are"
    for mode in ("P", "1", "I;16", "LA"):  # modes reduce() does not take are converted first
        buf = io.BytesIO()
        Image.new(mode, (side, side)).save(buf, format="PNG")
        image = server.decode_image("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                                    server.server_settings(keep_pixels=keep), "x")
        assert image.mode == "RGB" and image.width < side, mode


def test_a_header_past_pillows_bomb_limit_is_413_not_unreadable(embedder: Embedder) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0))
    with pytest.raises(server.ApiError) as caught:
        server.header_pixels(header + chunk(b"IEND", b""), "input[0].image")
    assert caught.value.status == 413


def test_a_short_text_request_is_served_while_large_image_requests_decode(
        embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two image requests hold both preprocessing threads (their decoding waits on a gate that opens only
    after the text request is answered): the text request is served on the thread kept for cheap ones."""
    import httpx

    app = create_app(embedder, model_name=MODEL, preprocess_threads=2)
    gate, decoding = threading.Event(), threading.Semaphore(0)
    real = server.decode_image

    def slow_decode(*args: Any, **kwargs: Any) -> Image.Image:
        decoding.release()
        assert gate.wait(timeout=60), "the gate never opened: the text request was not served"
        return real(*args, **kwargs)

    monkeypatch.setattr(server, "decode_image", slow_decode)

    async def scenario() -> tuple[int, list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as client:
            heavy = [asyncio.create_task(client.post("/v1/embeddings", json={
                "model": MODEL, "input": [{"image": png_url(40)}, {"image": png_url(50)}]})) for _ in range(2)]
            for _ in range(2):  # both preprocessing threads are now inside a decode
                await asyncio.to_thread(decoding.acquire, True, 60)
            light = await asyncio.wait_for(client.post("/v1/embeddings", json={"model": MODEL, "input": "hi"}), 60)
            gate.set()
            return light.status_code, [(await task).status_code for task in heavy]

    assert asyncio.run(scenario()) == (200, [200, 200])
    assert server.is_light("hi", None, server.server_settings())
    assert not server.is_light([server.InputObject(image="data:image/png;base64,AA==")], None, server.server_settings())
    assert not server.is_light(["x" * 5000], None, server.server_settings())
