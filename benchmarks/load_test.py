"""Load test of the embedding server: concurrent clients vs the same requests one at a time.

Starts the server on loopback (uvicorn in a thread) with ``--model DIR`` or a tiny model built
on the fly, then sends the same request list twice: sequentially, then from ``--clients``
concurrent clients. Each phase stops after ``--requests`` requests or ``--duration`` seconds.
Prints requests/s, p50/p99 latency, errors and the mean batch of the server's encode calls,
which shows what dynamic batching buys. Not a test; not run by CI.

    python benchmarks/load_test.py --clients 16 --requests 400
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from PIL import Image

from cocoa.inference.batcher import Batcher
from cocoa.inference.embedder import Embedder
from cocoa.inference.encoder import EmbeddingSpec
from cocoa.inference.server import create_app
from cocoa.model.backbone import Backbone

WORDS = ["a", "photo", "of", "a", "red", "dress", "on", "a", "white", "background", "with", "an", "ankle", "boot", "and", "a", "sneaker", "next", "to", "a", "bag"]


@dataclass
class Phase:
    name: str
    latencies: list[float]
    errors: int
    seconds: float
    encode_calls: int

    def report(self) -> str:
        n = len(self.latencies)
        lat = np.array(self.latencies or [0.0]) * 1000
        return (f"{self.name:<12} {n:>6} req {n / self.seconds:>8.1f} req/s  p50 {np.percentile(lat, 50):>7.1f} ms  "
                f"p99 {np.percentile(lat, 99):>7.1f} ms  errors {self.errors}  "
                f"encode calls {self.encode_calls} (mean batch {n / max(self.encode_calls, 1):.1f} requests)")


def tiny_model(folder: Path, preset: str) -> Path:
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 10
    Backbone.tiny(preset, "qwen2_vl", corpus=corpus, seed=0).save(folder)
    EmbeddingSpec().save(folder)
    return folder


def make_requests(n: int, model: str, image_every: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 40))))
        item: str | dict = text
        if image_every and i % image_every == 0:
            pixels = (rng.random((84, 84, 3)) * 255).astype("uint8")
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            item = {"text": text, "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}
        out.append({"model": model, "input": [item]})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_phase(name: str, url: str, bodies: list[dict], clients: int, duration: float,
                    batcher: Batcher) -> Phase:
    latencies: list[float] = []
    errors = 0
    pending = iter(bodies)
    calls_before = batcher.encode_calls
    deadline = time.perf_counter() + duration

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for body in pending:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            try:
                response = await client.post(url, json=body)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return Phase(name, latencies, errors, time.perf_counter() - start, batcher.encode_calls - calls_before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny model built on the fly)")
    parser.add_argument("--preset", default="small", help="tiny preset when no --model is given")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400, help="requests per phase")
    parser.add_argument("--duration", type=float, default=60, help="seconds per phase at most")
    parser.add_argument("--image-every", type=int, default=4, help="every n-th request has an image (0: none)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument("--preprocess-threads", type=int, default=2)
    parser.add_argument("--pack-tokens", type=int, default=512, help="tokens per packed row (0: padded batches)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or tiny_model(Path(tmp), args.preset)
        embedder = Embedder.from_pretrained(model_dir, device=args.device)
        app = create_app(embedder, model_name="bench", max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                         preprocess_threads=args.preprocess_threads, pack_tokens=args.pack_tokens or None)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/embeddings"
        bodies = make_requests(args.requests, "bench", args.image_every)
        batcher = app.state.batcher
        asyncio.run(run_phase("warmup", url, bodies[:8], 1, args.duration, batcher))
        print(f"device {embedder.encoder.device}, torch threads {torch.get_num_threads()}, dim {embedder.dim}, "
              f"{args.requests} requests/phase, 1 in {args.image_every} with an image, max_batch {args.max_batch}, "
              f"max_wait_ms {args.max_wait_ms}, preprocess_threads {args.preprocess_threads}, "
              f"pack_tokens {args.pack_tokens or 'off'}")
        sequential = asyncio.run(run_phase("sequential", url, bodies, 1, args.duration, batcher))
        print(sequential.report())
        concurrent = asyncio.run(run_phase(f"{args.clients} clients", url, bodies, args.clients, args.duration,
                                           batcher))
        print(concurrent.report())
        speedup = (len(concurrent.latencies) / concurrent.seconds) / (len(sequential.latencies) / sequential.seconds)
        print(f"throughput gain from dynamic batching: {speedup:.2f}x")
        server.should_exit = True
        thread.join(timeout=10)
        if sequential.errors or concurrent.errors:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
