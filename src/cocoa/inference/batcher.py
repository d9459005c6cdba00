"""Dynamic batching for the server: preprocessing in parallel with the model, one model call per batch.

A request goes through two stages:

1. :meth:`Batcher.prepare` parses it and turns its items into token sequences (tokenisation,
   image decoding and resizing) on a pool of preprocessing threads, each with a tokenizer of
   its own, so requests are preprocessed while the model encodes earlier ones and the event
   loop only routes. Bad input fails here, for that request alone. *Light* requests (the
   server's: short texts, no image) have threads of their own, as many, so they never wait
   behind the decoding of large images.
2. :meth:`Batcher.encode` queues the sequences; one model thread takes what is queued, up to
   ``max_batch`` items, and encodes it in one call, the sequences packed into rows of
   ``pack_tokens`` tokens so that no time goes to padding. It waits (at most ``max_wait_ms``)
   for more only while other requests are still being preprocessed, so a lone request never
   waits and concurrent ones share a batch. A batch takes the oldest waiting request, then the
   smallest others that fit: a small request rides along instead of waiting behind large ones,
   and the oldest is never passed over.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cocoa.core.errors import ConfigError
from cocoa.data.collate import Encoded, Preprocessor
from cocoa.data.items import Item
from cocoa.inference.embedder import Embedder


@dataclass
class _Job:
    seqs: list[Encoded]
    future: asyncio.Future[np.ndarray]


@dataclass(frozen=True)
class EncodeCall:
    """One model call: when it ran (``time.perf_counter`` seconds), how many sequences, the longest."""

    start: float
    end: float
    items: int
    longest: int


class Batcher:
    """Gathers concurrent requests into single encode calls of at most ``max_batch`` items.

    ``observers`` (shared by every batcher in the process) are called on the model thread with an
    :class:`EncodeCall` after each model call: a timing hook for profiling, empty by default.
    """

    observers: ClassVar[list[Callable[[EncodeCall], None]]] = []

    def __init__(self, embedder: Embedder, max_batch: int = 64, max_wait_ms: float = 5.0,
                 preprocess_threads: int = 2) -> None:
        if max_batch < 1 or max_wait_ms < 0 or preprocess_threads < 1:
            raise ConfigError(f"max_batch and preprocess_threads must be >= 1 and max_wait_ms >= 0, got "
                              f"{max_batch}, {preprocess_threads} and {max_wait_ms}")
        self.embedder, self.max_batch, self.max_wait_ms = embedder, max_batch, max_wait_ms
        self.encode_calls = self.encoded_items = 0
        self._preprocessors = threading.local()
        self._preprocess_pool = ThreadPoolExecutor(preprocess_threads, thread_name_prefix="cocoa-preprocess")
        self._light_pool = ThreadPoolExecutor(preprocess_threads, thread_name_prefix="cocoa-preprocess-light")
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="cocoa-model")
        self._preparing = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def prepare(self, make_items: Callable[[], Sequence[Item]], *, light: bool = False) -> list[Encoded]:
        """The embedding sequences of ``make_items()``, built on a preprocessing thread (``light``: on the
        threads kept for cheap requests)."""
        self._preparing += 1
        pool = self._light_pool if light else self._preprocess_pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, lambda: self._sequences(make_items()))
        finally:
            self._preparing -= 1

    async def encode(self, seqs: list[Encoded]) -> np.ndarray:
        """Full-width embeddings of ``seqs``, encoded together with whatever else is queued."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._loop is not loop or self._task.done():
            self._queue, self._loop = asyncio.Queue(), loop
            self._task = loop.create_task(self._run())
        assert self._queue is not None
        job = _Job(seqs, loop.create_future())
        await self._queue.put(job)
        return await job.future

    async def submit(self, items: Sequence[Item]) -> tuple[np.ndarray, list[int]]:
        """Embeddings and token counts of ready-made ``items`` (both stages in one call)."""
        seqs = await self.prepare(lambda: list(items))
        return await self.encode(seqs), [len(seq) for seq in seqs]

    async def stop(self) -> None:
        """Stop the model loop (a later :meth:`encode` starts it again)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _sequences(self, items: Sequence[Item]) -> list[Encoded]:
        preprocessor: Preprocessor | None = getattr(self._preprocessors, "value", None)
        if preprocessor is None:
            preprocessor = self._preprocessors.value = self.embedder.encoder.preprocessor.for_thread()
        return [preprocessor.embedding_sequence(item) for item in items]

    async def _wait_for_more(self, waiting: list[_Job]) -> None:
        """Add what is queued to ``waiting``; while requests are still being preprocessed and the batch is
        not full, wait for them until ``max_wait_ms``."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_ms / 1000
        while True:
            try:
                if not self._queue.empty():
                    waiting.append(self._queue.get_nowait())
                elif (self._preparing and loop.time() < deadline
                      and sum(len(job.seqs) for job in waiting) < self.max_batch):
                    waiting.append(await asyncio.wait_for(self._queue.get(), deadline - loop.time()))
                else:
                    return
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                return

    def _pick(self, waiting: list[_Job]) -> list[_Job]:
        """The next batch, taken out of ``waiting``: the oldest job, then the smallest others that fit."""
        chosen, size = [waiting[0]], len(waiting[0].seqs)
        for job in sorted(waiting[1:], key=lambda job: len(job.seqs)):
            if size + len(job.seqs) <= self.max_batch:
                chosen.append(job)
                size += len(job.seqs)
        for job in chosen:
            waiting.remove(job)
        return chosen

    async def _run(self) -> None:
        assert self._queue is not None
        waiting: list[_Job] = []
        while True:
            if not waiting:
                waiting.append(await self._queue.get())
            await self._wait_for_more(waiting)
            jobs = self._pick(waiting)
            await self._encode([job for job in jobs if not job.future.done()])

    async def _encode(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        seqs = [seq for job in jobs for seq in job.seqs]
        try:
            self.encode_calls += 1
            self.encoded_items += len(seqs)
            vectors = await asyncio.get_running_loop().run_in_executor(self._model_pool, self._encode_sync, seqs)
        except Exception as exc:
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(exc)
                return
            for job in jobs:  # one bad job must not fail the others: retry each alone
                await self._encode([job])
            return
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(vectors[start:start + len(job.seqs)])
            start += len(job.seqs)

    def _encode_sync(self, seqs: list[Encoded]) -> np.ndarray:
        start = time.perf_counter()
        vectors = self.embedder.encoder.encode_sequences(seqs, batch_size=self.max_batch)
        if Batcher.observers:
            call = EncodeCall(start, time.perf_counter(), len(seqs), max(len(seq) for seq in seqs))
            for observe in Batcher.observers:
                observe(call)
        return vectors
