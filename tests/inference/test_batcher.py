"""cocoa.inference.batcher: dynamic batching of server requests, failures isolated per job."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cocoa.core.errors import ConfigError, DataError
from cocoa.data.items import IMAGE_PLACEHOLDER, Item
from cocoa.inference.batcher import Batcher, EncodeCall
from cocoa.inference.embedder import Embedder
from cocoa.inference.server import create_app
from tests.helpers import SERVED_MODEL as MODEL
from tests.helpers import response_vectors as vectors


def test_concurrent_requests_are_batched(embedder: Embedder) -> None:
    app = create_app(embedder, model_name=MODEL, max_wait_ms=300)
    texts = [f"request {i} " + "word " * (i * 3) for i in range(8)]
    want = embedder.encode(texts)
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(texts))
    with TestClient(app) as client:
        def call(i: int) -> None:
            barrier.wait()
            results[i] = vectors(client.post("/v1/embeddings", json={"model": MODEL, "input": [texts[i]]}))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batching = client.get("/health").json()["batching"]
    assert batching == {"encode_calls": app.state.batcher.encode_calls, "items": len(texts)}
    assert len(results) == len(texts)
    for i, got in results.items():
        np.testing.assert_allclose(got, want[i:i + 1], atol=1e-5)
    assert app.state.batcher.encode_calls < len(texts)


def test_batcher_isolates_a_failing_job(embedder: Embedder) -> None:
    async def run() -> list[Any]:
        batcher = Batcher(embedder, max_batch=16, max_wait_ms=200)
        jobs = [batcher.submit([Item("fine")]), batcher.submit([Item(f"{IMAGE_PLACEHOLDER} no image")]),
                batcher.submit([Item("also fine"), Item("three")])]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.stop()
        return [r if isinstance(r, Exception) else r[0] for r in out]

    good, bad, pair = asyncio.run(run())
    assert isinstance(bad, DataError)
    np.testing.assert_allclose(good, embedder.encode(["fine"]), atol=1e-5)
    np.testing.assert_allclose(pair, embedder.encode(["also fine", "three"]), atol=1e-5)


def test_a_job_failing_in_the_model_fails_alone(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    poison = embedder.encoder.preprocessor.embedding_sequence(Item("poison " * 7)).ids
    real = embedder.encoder.encode_sequences

    def encode(seqs: list[Any], **kwargs: Any) -> np.ndarray:
        if any(seq.ids == poison for seq in seqs):
            raise RuntimeError("the model failed")
        return real(seqs, **kwargs)

    monkeypatch.setattr(embedder.encoder, "encode_sequences", encode)

    async def run() -> tuple[list[Any], int]:
        batcher = Batcher(embedder, max_batch=16, max_wait_ms=2000)
        out = await asyncio.gather(batcher.submit([Item("fine")]), batcher.submit([Item("poison " * 7)]),
                                   batcher.submit([Item("also fine")]), return_exceptions=True)
        await batcher.stop()
        return out, batcher.encode_calls

    (good, bad, other), calls = asyncio.run(run())
    assert isinstance(bad, RuntimeError)
    np.testing.assert_allclose(good[0], real([embedder.encoder.preprocessor.embedding_sequence(Item("fine"))],
                                             batch_size=1), atol=1e-5)
    assert other[1] == [len(embedder.encoder.preprocessor.embedding_sequence(Item("also fine")))]
    assert calls > 3  # the shared batch failed, then each job was encoded alone


def test_a_lone_request_does_not_wait_for_the_batch_to_fill(embedder: Embedder) -> None:
    async def run() -> np.ndarray:
        batcher = Batcher(embedder, max_wait_ms=3_600_000)
        vectors, _ = await asyncio.wait_for(batcher.submit([Item("alone")]), timeout=60)
        await batcher.stop()
        return vectors

    np.testing.assert_allclose(asyncio.run(run()), embedder.encode(["alone"]), atol=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [({"max_batch": 0}, "max_batch"),
                                                 ({"preprocess_threads": 0}, "preprocess_threads"),
                                                 ({"max_wait_ms": -1}, "max_wait_ms")])
def test_bad_batcher_settings_are_refused(embedder: Embedder, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Batcher(embedder, **kwargs)


def test_batcher_observers_see_every_model_call(client: TestClient, embedder: Embedder) -> None:
    texts = ["one", "two words", "a somewhat longer third input"]
    seen: list[EncodeCall] = []
    Batcher.observers.append(seen.append)
    try:
        response = client.post("/v1/embeddings", json={"model": MODEL, "input": texts})
    finally:
        Batcher.observers.remove(seen.append)
    assert response.status_code == 200
    assert sum(call.items for call in seen) == 3 and all(call.end >= call.start for call in seen)
    lengths = [len(embedder.encoder.preprocessor.embedding_sequence(Item(text))) for text in texts]
    assert max(call.longest for call in seen) == max(lengths)


def test_a_batch_takes_the_oldest_job_then_the_smallest_that_fit(embedder: Embedder) -> None:
    from cocoa.inference.batcher import Batcher, _Job

    batcher = Batcher(embedder, max_batch=8)
    jobs = [_Job([None] * n, None) for n in (6, 5, 1, 2, 8)]  # type: ignore[list-item, arg-type]
    waiting = list(jobs)
    assert [len(j.seqs) for j in batcher._pick(waiting)] == [6, 1]  # the oldest, then the one-item job
    assert [len(j.seqs) for j in batcher._pick(waiting)] == [5, 2]
    assert [len(j.seqs) for j in batcher._pick(waiting)] == [8] and waiting == []
