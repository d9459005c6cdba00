"""Fuzzing the server in-process: no request body, however malformed, gets a 5xx or a bare error."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cocoa.inference.embedder import Embedder
from cocoa.inference.server import create_app

MODEL = "tiny-cocoa"


def png(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (width % 256, height % 256, 7)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# Texts with every kind of code point, lone surrogates included; images that are fine, too thin,
# too large, not images, not base64; numbers as numbers, booleans and strings.
surrogates = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=2)
texts = st.one_of(st.text(max_size=40), st.builds(lambda a, s, b: a + s + b, st.text(max_size=10), surrogates,
                                                  st.text(max_size=10)))
images = st.one_of(st.builds(png, st.integers(100, 1000), st.integers(1, 3)),
                   st.builds(png, st.integers(1, 60), st.integers(1, 60)),
                   st.binary(max_size=64).map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
                   texts)
inputs = st.one_of(texts, st.fixed_dictionaries({}, optional={"text": st.one_of(texts, st.integers()),
                                                              "image": st.one_of(images, st.none()),
                                                              "txt": texts}))
numbers = st.one_of(st.integers(-5, 200), st.booleans(), st.text(max_size=4), st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False))
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), texts),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                           max_leaves=12)
embedding_bodies = st.fixed_dictionaries(
    {"model": st.one_of(st.just(MODEL), texts, st.integers())},
    optional={"input": st.one_of(texts, st.lists(inputs, max_size=4), json_values),
              "instruction": st.one_of(texts, st.integers(), st.none()),
              "dimensions": numbers, "encoding_format": st.sampled_from(["float", "base64", "int8", 3])})
# Well-formed requests with hostile contents: these reach preprocessing, where the model's own
# preconditions (image shape, encodable text) must turn into 4xx answers.
well_formed = st.fixed_dictionaries(
    {"model": st.just(MODEL),
     "input": st.lists(st.fixed_dictionaries({}, optional={"text": texts, "image": images}), min_size=1,
                       max_size=3)},
    optional={"instruction": texts, "dimensions": st.sampled_from([32, 96, 64, 1])})
search_bodies = st.fixed_dictionaries({}, optional={"text": st.one_of(texts, st.integers()), "image": images,
                                                    "k": numbers, "instruction": texts, "model": texts})


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    from cocoa.inference.index import VectorIndex

    embedder = Embedder.from_pretrained(model_dir, device="cpu")
    index = VectorIndex.build(embedder.encode(["a", "b"]), ["a", "b"], fingerprint=embedder.fingerprint)
    with TestClient(create_app(embedder, model_name=MODEL, index=index, max_text_chars=200,
                               max_image_pixels=40_000)) as test_client:
        yield test_client


def post_and_check(client: TestClient, path: str, raw: bytes) -> None:
    """POST ``raw`` as JSON: never a 5xx, and every error in the ``{"error": ...}`` envelope."""
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        payload = json.loads(response.content)
        assert set(payload) == {"error"} and {"message", "type", "code"} <= set(payload["error"]), response.content


def as_json(body: dict) -> bytes:
    """``body`` with ASCII escapes, so that a lone surrogate reaches the server as ``\\ud800``."""
    return json.dumps(body, ensure_ascii=True).encode()


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow], derandomize=True)


@FUZZ
@given(body=embedding_bodies)
def test_embeddings_never_answer_5xx(client: TestClient, body: dict) -> None:
    post_and_check(client, "/v1/embeddings", as_json(body))


@FUZZ
@given(body=well_formed)
def test_well_formed_requests_with_hostile_contents_never_answer_5xx(client: TestClient, body: dict) -> None:
    post_and_check(client, "/v1/embeddings", as_json(body))


@FUZZ
@given(body=search_bodies)
def test_search_never_answers_5xx(client: TestClient, body: dict) -> None:
    post_and_check(client, "/v1/search", as_json(body))


# The request pixel budget: images that are each within the per-image limit, in requests over and
# under the budget; 413 exactly when the sum of their pixels is over it.
BUDGET = 30_000
sizes = st.tuples(st.integers(20, 190), st.integers(20, 190))


@pytest.fixture(scope="module")
def budget_client(model_dir: Path) -> Iterator[TestClient]:
    embedder = Embedder.from_pretrained(model_dir, device="cpu")
    with TestClient(create_app(embedder, model_name=MODEL, max_image_pixels=40_000,
                               max_request_pixels=BUDGET)) as test_client:
        yield test_client


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(shapes=st.lists(sizes, min_size=1, max_size=4))
def test_the_request_pixel_budget_holds_for_any_mix_of_images(budget_client: TestClient,
                                                              shapes: list[tuple[int, int]]) -> None:
    body = {"model": MODEL, "input": [{"text": "a", "image": png(w, h)} for w, h in shapes]}
    response = budget_client.post("/v1/embeddings", content=as_json(body), headers={"content-type": "application/json"})
    over = sum(w * h for w, h in shapes) > BUDGET
    assert response.status_code == (413 if over else 200), response.content
    if over:
        assert str(BUDGET) in response.json()["error"]["message"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(raw=st.binary(max_size=200), path=st.sampled_from(["/v1/embeddings", "/v1/search"]))
def test_arbitrary_bytes_never_answer_5xx(client: TestClient, raw: bytes, path: str) -> None:
    post_and_check(client, path, raw)
