"""The server the inference tests call: a tiny model with a small index, under request limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cocoa.inference.embedder import Embedder
from cocoa.inference.index import VectorIndex
from cocoa.inference.server import create_app
from tests.helpers import SERVED_MODEL as MODEL


@pytest.fixture(scope="module")
def index(embedder: Embedder) -> VectorIndex:
    texts = ["a red dress", "an ankle boot", "a sneaker next to a bag", "a white background"]
    return VectorIndex.build(embedder.encode(texts), texts, [{"text": t} for t in texts],
                             fingerprint=embedder.fingerprint)


@pytest.fixture(scope="module")
def client(embedder: Embedder, index: VectorIndex) -> Iterator[TestClient]:
    app = create_app(embedder, model_name=MODEL, index=index, max_inputs=8, max_image_bytes=100_000,
                     max_image_pixels=200 * 200, max_text_chars=1000)
    with TestClient(app) as test_client:
        yield test_client
