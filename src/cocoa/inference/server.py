"""An HTTP embedding server: OpenAI-compatible ``/v1/embeddings``, ``/v1/models``, ``/v1/search``, ``/health``.

Each request is parsed and preprocessed on a preprocessing thread, then batched dynamically
with the other requests in flight into one model call (:mod:`cocoa.inference.batcher`); the
event loop only routes and writes the JSON (orjson, vectors straight from numpy). Every client
mistake gets a JSON ``{"error": {"message", "type", "code"}}`` with a 4xx status (never a 5xx),
checked before the model sees it; the server keeps serving after them. With an API key,
:class:`Guard` refuses a request without it before reading its body, and counts body bytes as
they arrive, chunked or not.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cocoa.core.errors import CocoaError, ConfigError, DataError
from cocoa.core.hub import is_hub_id
from cocoa.core.matryoshka import check_dim
from cocoa.core.memory import release_free_memory
from cocoa.data.images import ImageTooLarge, open_image
from cocoa.data.items import IMAGE_PLACEHOLDER, Item, is_empty, text_problem
from cocoa.inference.batcher import Batcher
from cocoa.inference.embedder import Embedder, with_instruction
from cocoa.inference.index import VectorIndex
from cocoa.inference.settings import DEFAULTS, SERVE_PACK_TOKENS, ServerSettings

logger = logging.getLogger(__name__)
#: A decoded image is kept at up to this many times the pixels the vision tower takes (the final
#: resize then still works from more pixels than it keeps).
KEEP_FACTOR = 4
#: After a request whose images have more pixels than this in all, freed memory is returned to the OS.
RELEASE_PIXELS = 16_000_000


class ApiError(Exception):
    """A request error with its HTTP status."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class InputObject(BaseModel):
    """One multimodal input: text, a ``data:image/...;base64,`` image, or both."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr | None = None
    image: StrictStr | None = None


class EmbeddingRequest(BaseModel):
    """The OpenAI embeddings request, plus cocoa's ``instruction``; types are strict (no coercion)."""

    model: StrictStr
    input: StrictStr | list[StrictStr | InputObject]
    encoding_format: Literal["float", "base64"] = "float"
    instruction: StrictStr | None = None
    dimensions: StrictInt | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: StrictStr | None = None
    text: StrictStr | None = None
    image: StrictStr | None = None
    instruction: StrictStr | None = None
    k: StrictInt = Field(default=5, ge=1, le=1000)


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str


class ErrorResponse(BaseModel):
    """Every error the server sends: ``{"error": {"message", "type", "code"}}``."""

    error: ErrorBody


#: The error statuses each endpoint can answer, for the OpenAPI schema.
ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in (
    (400, "an input cannot be embedded (bad image, empty or invalid text, unsupported dimensions)"),
    (401, "missing or incorrect API key"), (404, "unknown model, or no index loaded"),
    (413, "over a size limit (body, inputs, text, image)"), (422, "the request does not match the schema"))}


def image_bytes(data: str, limits: ServerSettings, where: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URL (or bare base64), within the byte limit."""
    if data.startswith(("http://", "https://")):
        raise ApiError(400, f"{where}: image URLs are not fetched; send a data:image/...;base64, URL", "invalid_image")
    if data.startswith("data:"):
        header, sep, data = data.partition(",")
        if not sep or not header.endswith(";base64") or not header.lower().startswith("data:image/"):
            raise ApiError(400, f"{where}: image data URL must look like data:image/png;base64,...", "invalid_image")
    if len(data) > limits.max_image_bytes * 4 // 3 + 4:
        raise ApiError(413, f"{where}: image is over the limit of {limits.max_image_bytes} bytes", "image_too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"{where}: image is not valid base64 ({exc})", "invalid_base64") from exc
    if len(raw) > limits.max_image_bytes:
        raise ApiError(413, f"{where}: image is over the limit of {limits.max_image_bytes} bytes", "image_too_large")
    return raw


def header_pixels(raw: bytes, where: str) -> int:
    """Width x height from an encoded image's header (nothing decoded)."""
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"{where}: image is too large ({exc})", "image_too_large") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ApiError(400, f"{where}: bytes are not a readable image", "invalid_image") from exc
    return width * height


def decode_image(data: str | bytes, limits: ServerSettings, where: str) -> Image.Image:
    """An image URL (or its bytes) as an RGB image, within ``limits``, kept at ``limits.keep_pixels``."""
    raw = image_bytes(data, limits, where) if isinstance(data, str) else data
    try:
        image = open_image(raw, max_pixels=limits.max_image_pixels, keep_pixels=limits.keep_pixels)
    except ImageTooLarge as exc:
        raise ApiError(413, f"{where}: {exc}", "image_too_large") from exc
    except DataError as exc:
        raise ApiError(400, f"{where}: {exc}", "invalid_image") from exc
    return image


def check_text(text: str, limits: ServerSettings, where: str) -> None:
    """An :class:`ApiError` naming ``where`` if ``text`` is over the length limit or not valid Unicode."""
    if len(text) > limits.max_text_chars:
        raise ApiError(413, f"{where}: text has {len(text)} characters, over the limit of "
                            f"{limits.max_text_chars}", "text_too_long")
    if problem := text_problem(text):
        raise ApiError(400, f"{where}: {problem}", "invalid_text")


def parse_input(text: str | None, image: str | bytes | None, instruction: str | None, limits: ServerSettings,
                where: str) -> Item:
    """One request input as an item, or an :class:`ApiError` naming it."""
    text = text or ""
    check_text(text, limits, where)
    if instruction is not None:
        check_text(instruction, limits, "instruction")
    pil = decode_image(image, limits, f"{where}.image") if image else None
    if is_empty(text, pil):
        raise ApiError(400, f"{where}: input is empty (no text and no image)", "empty_input")
    return Item(with_instruction(text, instruction, IMAGE_PLACEHOLDER if pil is not None else None), pil)


def parse_inputs(raw: str | list[str | InputObject], instruction: str | None, limits: ServerSettings) -> list[Item]:
    values = [raw] if isinstance(raw, str) else raw
    if not values:
        raise ApiError(400, "input is empty; send a string or a non-empty list", "empty_input")
    if len(values) > limits.max_inputs:
        raise ApiError(413, f"input has {len(values)} items, over the limit of {limits.max_inputs}", "too_many_inputs")
    images = {i: image_bytes(v.image, limits, f"input[{i}].image") for i, v in enumerate(values)
              if not isinstance(v, str) and v.image}
    total = sum(header_pixels(raw, f"input[{i}].image") for i, raw in images.items())
    if total > limits.max_request_pixels:
        raise ApiError(413, f"the request's images have {total} pixels in all, over the budget of "
                            f"{limits.max_request_pixels} per request; send fewer or smaller images",
                       "request_too_large")
    try:
        return [parse_input(v, None, instruction, limits, f"input[{i}]") if isinstance(v, str)
                else parse_input(v.text, images.get(i), instruction, limits, f"input[{i}]")
                for i, v in enumerate(values)]
    finally:
        if total > RELEASE_PIXELS:  # large decodes were freed: give their pages back (RSS returns to baseline)
            release_free_memory()


def is_light(raw: str | list[str | InputObject], instruction: str | None, limits: ServerSettings) -> bool:
    """Whether a request is cheap enough for the preprocessing thread kept for cheap requests: no image,
    and at most ``limits.light_chars`` characters of text in all (known before anything is parsed)."""
    values = [raw] if isinstance(raw, str) else raw
    if not values or any(not isinstance(v, str) and v.image for v in values):
        return False
    chars = sum(len(v) if isinstance(v, str) else len(v.text or "") for v in values)
    return chars + len(values) * len(instruction or "") <= limits.light_chars


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status,
                        headers=headers)


class BodyTooLarge(HTTPException):
    """A request body over the limit, found while it arrives."""


class Guard:
    """Refuses a request without the API key before its body is read, and one whose body passes
    ``max_bytes``, by ``Content-Length`` or, for a chunked upload, as its bytes arrive.

    ``open_paths`` need no key (the liveness check). A plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` runs every request through a task group and a body stream, which took
    more than half of the event loop's time under load (py-spy), time the model thread waits for
    the GIL.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, api_key: str | None = None,
                 open_paths: frozenset[str] = frozenset()) -> None:
        self.app, self.max_bytes, self.api_key, self.open_paths = app, max_bytes, api_key, open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.api_key is not None and scope["path"] not in self.open_paths:
            problem = key_problem(headers.get(b"authorization", b"").decode("latin-1"), self.api_key)
            if problem is not None:
                await _error(401, *problem)(scope, receive, send)
                return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await _error(413, *self._too_large())(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge(413, self._too_large()[0])
            return message

        await self.app(scope, counted, send)

    def _too_large(self) -> tuple[str, str]:
        return f"request body is over the limit of {self.max_bytes} bytes", "body_too_large"


def key_problem(authorization: str, api_key: str) -> tuple[str, str] | None:
    """``(message, code)`` if the ``Authorization`` header does not carry ``api_key`` (compared in
    constant time), else ``None``."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key"
    if not secrets.compare_digest(token.strip().encode(), api_key.encode()):
        return "incorrect API key", "invalid_api_key"
    return None


#: HTTP errors Starlette raises itself, by status, as error codes.
HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


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


def check_api_key(api_key: str | None) -> None:
    """:class:`ConfigError` for an empty or blank key: it would read as "no authentication"."""
    if api_key is not None and not api_key.strip():
        raise ConfigError("the API key is empty (from --api-key, COCOA_API_KEY or --api-key-file): give a key, "
                          "or none at all to serve without authentication")


def create_app(embedder: Embedder, *, model_name: str, index: VectorIndex | None = None,
               api_key: str | None = None, **settings: Any) -> FastAPI:
    """The FastAPI app serving ``embedder`` (and ``index`` for ``/v1/search``) as ``model_name``.

    ``settings`` are :class:`~cocoa.inference.settings.ServerSettings` fields; the ones left out keep
    their defaults.
    """
    check_api_key(api_key)
    limits = server_settings(**settings)
    if limits.keep_pixels is None:
        limits = replace(limits, keep_pixels=KEEP_FACTOR * embedder.image_pixels)
    batcher = Batcher(embedder, limits.max_batch, limits.max_wait_ms, limits.preprocess_threads)
    if index is not None:
        index.check_model(embedder.fingerprint, embedder.dims)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.stop()

    docs = {} if api_key is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="cocoa embeddings", lifespan=lifespan, **docs)
    app.state.batcher, app.state.limits = batcher, limits

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.code)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            return _error(400, "request body is not valid UTF-8 JSON", "invalid_json")
        return _error(exc.status_code, str(exc.detail), HTTP_CODES.get(exc.status_code, "http_error"),
                      headers=exc.headers)  # e.g. a 405's Allow

    @app.exception_handler(CocoaError)
    async def _cocoa_error(_: Request, exc: CocoaError) -> JSONResponse:
        return _error(400, str(exc), "invalid_input")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc), "invalid_request")

    app.add_middleware(Guard, max_bytes=limits.max_body_bytes, api_key=api_key, open_paths=frozenset({"/health"}))

    def authorized(request: Request) -> bool:
        return api_key is None or key_problem(request.headers.get("authorization", ""), api_key) is None

    def check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise ApiError(404, f"model {name!r} not found; this server serves {model_name!r}", "model_not_found")

    def check_width(dimensions: int) -> int:
        try:
            return check_dim(dimensions, embedder.dims, "dimensions")
        except ConfigError as exc:
            raise ApiError(400, str(exc), "unsupported_dimensions") from exc

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Liveness for anyone; the model, its fingerprint and counters only with the API key (if one is set)."""
        if not authorized(request):
            return {"status": "ok"}
        return {"status": "ok", "model": model_name, "dim": embedder.dim, "dimensions": list(embedder.dims),
                "fingerprint": embedder.fingerprint,
                "index": None if index is None else {"kind": index.kind, "count": len(index)},
                "batching": {"encode_calls": batcher.encode_calls, "items": batcher.encoded_items}}

    @app.get("/v1/models", responses={401: ERRORS[401]})
    async def models() -> dict[str, Any]:
        """The served model, as OpenAI's model list has it."""
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "cocoa"}]}

    @app.post("/v1/embeddings", responses=ERRORS)
    async def embeddings(body: EmbeddingRequest) -> Response:
        check_model(body.model)
        width = embedder.dim if body.dimensions is None else check_width(body.dimensions)
        seqs = await batcher.prepare(lambda: parse_inputs(body.input, body.instruction, limits),
                                     light=is_light(body.input, body.instruction, limits))
        vectors = embedder.truncate(await batcher.encode(seqs), width)
        tokens = sum(len(seq) for seq in seqs)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
                for i, v in enumerate(vectors)]
        return _json({"object": "list", "data": data, "model": model_name,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/v1/search", responses=ERRORS)
    async def search(body: SearchRequest) -> Response:
        check_model(body.model)
        if index is None:
            raise ApiError(404, "no index is loaded on this server; start it with an index folder", "no_index")
        seqs = await batcher.prepare(lambda: [parse_input(body.text, body.image, body.instruction, limits, "query")],
                                     light=is_light([body.text or ""] if body.image is None else [], body.instruction,
                                                    limits))
        vectors = await batcher.encode(seqs)
        hits = index.search(embedder.truncate(vectors, index.dim), body.k)[0]
        return _json({"object": "list", "model": model_name,
                      "data": [{"id": h.id, "score": h.score, "payload": h.payload} for h in hits]})

    return app


def server_settings(**settings: Any) -> ServerSettings:
    """:class:`ServerSettings` with ``settings`` changed, or a :class:`ConfigError` naming an unknown one."""
    unknown = sorted(set(settings) - {f.name for f in fields(ServerSettings)})
    if unknown:
        raise ConfigError(f"unknown server settings {unknown}; known: {', '.join(f.name for f in fields(ServerSettings))}")
    return replace(DEFAULTS, **settings)


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
          torch_threads: int | None = None, pack_tokens: int | None = SERVE_PACK_TOKENS, **limits: Any) -> None:
    """Load ``model_dir`` (a folder or a Hub id; and ``index_dir``) and serve them with uvicorn until
    interrupted. The model is served under ``model_name``, by default the Hub id or the folder's name.

    ``torch_threads``: see :func:`model_threads` (set for this whole process). ``pack_tokens``: the
    embedder's packed rows (:class:`~cocoa.model.packing.Packing`; ``None`` pads).
    """
    import uvicorn

    from cocoa.inference.http_protocol import EnvelopeHTTPProtocol

    check_api_key(api_key)
    torch.set_num_threads(model_threads(torch_threads))
    embedder = Embedder.from_pretrained(model_dir, device=device, pack_tokens=pack_tokens)
    index = VectorIndex.load(index_dir) if index_dir is not None else None
    name = model_name or (str(model_dir) if is_hub_id(model_dir) else Path(model_dir).resolve().name)
    app = create_app(embedder, model_name=name, index=index,
                     api_key=api_key, **limits)
    logger.warning("authentication: %s", "on (Authorization: Bearer <key>)" if api_key is not None else
                   "OFF: every client may call the server (give --api-key-file or COCOA_API_KEY to require a key)")
    uvicorn.run(app, host=host, port=port, http=EnvelopeHTTPProtocol)
