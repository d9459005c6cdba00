"""An HTTP embedding server: OpenAI-compatible ``/v1/embeddings``, ``/v1/search`` and ``/health``.

Each request is parsed and preprocessed on a preprocessing thread, then batched dynamically
with the other requests in flight into one model call (:mod:`cocoa.inference.batcher`); the
event loop only routes and writes the JSON (orjson, vectors straight from numpy). User
mistakes get a JSON ``{"error": {"message", "type", "code"}}`` with a 4xx status; the server
keeps serving after them.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from cocoa.data.images import MAX_IMAGE_PIXELS, ImageTooLarge, open_image
from cocoa.data.items import Item, is_empty
from cocoa.errors import CocoaError, ConfigError, DataError
from cocoa.inference.batcher import Batcher
from cocoa.inference.embedder import Embedder, with_instruction
from cocoa.inference.index import VectorIndex
from cocoa.model.matryoshka import check_dimensions


class ApiError(Exception):
    """A request error with its HTTP status."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass(frozen=True)
class Limits:
    """Request size limits."""

    max_inputs: int = 256
    max_text_chars: int = 16_384
    max_image_bytes: int = 10_000_000
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_body_bytes: int = 64_000_000


class InputObject(BaseModel):
    """One multimodal input: text, a ``data:image/...;base64,`` image, or both."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    image: str | None = None


class EmbeddingRequest(BaseModel):
    model: str
    input: str | list[str | InputObject]
    encoding_format: Literal["float", "base64"] = "float"
    instruction: str | None = None
    dimensions: int | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    text: str | None = None
    image: str | None = None
    instruction: str | None = None
    k: int = Field(default=5, ge=1, le=1000)


def decode_image(data: str, limits: Limits, where: str) -> Image.Image:
    """A ``data:image/...;base64,`` URL (or bare base64) as an RGB image, within ``limits``."""
    if data.startswith(("http://", "https://")):
        raise ApiError(400, f"{where}: image URLs are not fetched; send a data:image/...;base64, URL", "invalid_image")
    if data.startswith("data:"):
        header, sep, data = data.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ApiError(400, f"{where}: image data URL must look like data:image/png;base64,...", "invalid_image")
    if len(data) > limits.max_image_bytes * 4 // 3 + 4:
        raise ApiError(413, f"{where}: image is over the limit of {limits.max_image_bytes} bytes", "image_too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"{where}: image is not valid base64 ({exc})", "invalid_base64") from exc
    if len(raw) > limits.max_image_bytes:
        raise ApiError(413, f"{where}: image is over the limit of {limits.max_image_bytes} bytes", "image_too_large")
    try:
        image = open_image(raw, max_pixels=limits.max_image_pixels)
    except ImageTooLarge as exc:
        raise ApiError(413, f"{where}: {exc}", "image_too_large") from exc
    except DataError as exc:
        raise ApiError(400, f"{where}: {exc}", "invalid_image") from exc
    return image


def parse_input(text: str | None, image: str | None, instruction: str | None, limits: Limits,
                where: str) -> Item:
    """One request input as an item, or an :class:`ApiError` naming it."""
    text = text or ""
    if len(text) > limits.max_text_chars:
        raise ApiError(413, f"{where}: text has {len(text)} characters, over the limit of "
                            f"{limits.max_text_chars}", "text_too_long")
    pil = decode_image(image, limits, f"{where}.image") if image else None
    if is_empty(text, pil):
        raise ApiError(400, f"{where}: input is empty (no text and no image)", "empty_input")
    return Item(with_instruction(text, instruction, pil is not None), pil)


def parse_inputs(raw: str | list[str | InputObject], instruction: str | None, limits: Limits) -> list[Item]:
    values = [raw] if isinstance(raw, str) else raw
    if not values:
        raise ApiError(400, "input is empty; send a string or a non-empty list", "empty_input")
    if len(values) > limits.max_inputs:
        raise ApiError(413, f"input has {len(values)} items, over the limit of {limits.max_inputs}", "too_many_inputs")
    return [parse_input(v, None, instruction, limits, f"input[{i}]") if isinstance(v, str)
            else parse_input(v.text, v.image, instruction, limits, f"input[{i}]")
            for i, v in enumerate(values)]


def _error(status: int, message: str, code: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status)


class BodyLimit:
    """Refuses a request whose Content-Length is over ``max_bytes`` before its body is read.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) runs
    every request through a task group and a body stream, which took more than half of the
    event loop's time under load (py-spy), time the model thread waits for the GIL.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.max_bytes:
                response = _error(413, f"request body is over the limit of {self.max_bytes} bytes", "body_too_large")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def _encode_vector(vector: np.ndarray, fmt: str) -> np.ndarray | str:
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return np.ascontiguousarray(vector, dtype=np.float32)


def _json(payload: dict[str, Any]) -> Response:
    """``payload`` as JSON; numpy vectors are written by orjson directly, without Python floats."""
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def create_app(embedder: Embedder, *, model_name: str, index: VectorIndex | None = None,
               api_key: str | None = None, max_batch: int = 64, max_wait_ms: float = 5,
               max_inputs: int = 256, max_text_chars: int = 16_384, max_image_bytes: int = 10_000_000,
               max_image_pixels: int = MAX_IMAGE_PIXELS, max_body_bytes: int = 64_000_000,
               preprocess_threads: int = 2, pack_tokens: int | None = 512) -> FastAPI:
    """The FastAPI app serving ``embedder`` (and ``index`` for ``/v1/search``) as ``model_name``.

    ``max_batch``, ``max_wait_ms``, ``preprocess_threads`` and ``pack_tokens`` are the
    :class:`~cocoa.inference.batcher.Batcher`'s.
    """
    batcher = Batcher(embedder, max_batch, max_wait_ms, preprocess_threads, pack_tokens)
    if index is not None:
        if index.dim not in embedder.widths:
            raise ConfigError(f"index has dim {index.dim} but the model embeds to widths "
                              f"{', '.join(map(str, embedder.widths))}")
        if index.fingerprint and index.fingerprint != embedder.fingerprint:
            raise ConfigError(f"index was built with model {index.fingerprint}, not this model "
                              f"({embedder.fingerprint}); rebuild it")
    limits = Limits(max_inputs, max_text_chars, max_image_bytes, max_image_pixels, max_body_bytes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.stop()

    app = FastAPI(title="cocoa embeddings", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.code)

    @app.exception_handler(CocoaError)
    async def _cocoa_error(_: Request, exc: CocoaError) -> JSONResponse:
        return _error(400, str(exc), "invalid_input")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc), "invalid_request")

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    async def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")
        if not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "incorrect API key", "invalid_api_key")

    def check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise ApiError(404, f"model {name!r} not found; this server serves {model_name!r}", "model_not_found")

    def check_width(dimensions: int) -> int:
        try:
            return check_dimensions(dimensions, embedder.widths)
        except ConfigError as exc:
            raise ApiError(400, str(exc), "unsupported_dimensions") from exc

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "dim": embedder.dim, "dimensions": list(embedder.widths),
                "fingerprint": embedder.fingerprint,
                "index": None if index is None else {"kind": index.kind, "count": len(index)},
                "batching": {"encode_calls": batcher.encode_calls, "items": batcher.encoded_items}}

    @app.post("/v1/embeddings", dependencies=[Depends(authorize)])
    async def embeddings(body: EmbeddingRequest) -> Response:
        check_model(body.model)
        width = embedder.dim if body.dimensions is None else check_width(body.dimensions)
        seqs = await batcher.prepare(parse_inputs, body.input, body.instruction, limits)
        vectors = embedder.truncate(await batcher.encode(seqs), width)
        tokens = sum(len(seq) for seq in seqs)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
                for i, v in enumerate(vectors)]
        return _json({"object": "list", "data": data, "model": model_name,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/v1/search", dependencies=[Depends(authorize)])
    async def search(body: SearchRequest) -> Response:
        check_model(body.model)
        if index is None:
            raise ApiError(404, "no index is loaded on this server; start it with an index folder", "no_index")
        seqs = await batcher.prepare(lambda: [parse_input(body.text, body.image, body.instruction, limits, "query")])
        vectors = await batcher.encode(seqs)
        hits = index.search(embedder.truncate(vectors, index.dim), body.k)[0]
        return _json({"object": "list", "model": model_name,
                      "data": [{"id": h.id, "score": h.score, "payload": h.payload} for h in hits]})

    return app


def model_threads(requested: int | None = None) -> int:
    """Torch threads for the served model: ``requested``, or every torch thread but one.

    The one left over is for the event loop and the preprocessing threads: on a CPU, torch's
    threads otherwise compete with them for the cores while holding the work of a batch.
    """
    if requested is None:
        return max(1, torch.get_num_threads() - 1)
    if requested < 1:
        raise ConfigError(f"torch_threads must be at least 1 (or None: all but one), got {requested}")
    return requested


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, index_dir: str | Path | None = None,
          api_key: str | None = None, *, model_name: str | None = None, device: str | None = None,
          torch_threads: int | None = None, **limits: Any) -> None:
    """Load ``model_dir`` (and ``index_dir``) and serve them with uvicorn until interrupted.

    ``torch_threads``: see :func:`model_threads` (set for this whole process).
    """
    import uvicorn

    torch.set_num_threads(model_threads(torch_threads))
    embedder = Embedder.from_pretrained(model_dir, device=device)
    index = VectorIndex.load(index_dir) if index_dir is not None else None
    app = create_app(embedder, model_name=model_name or Path(model_dir).resolve().name, index=index,
                     api_key=api_key, **limits)
    uvicorn.run(app, host=host, port=port)
