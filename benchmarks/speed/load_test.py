"""Load test of the embedding server: concurrent clients vs the same requests one at a time.

Starts ``cocoa serve`` on loopback with ``--model DIR`` or a tiny model built on the fly,
either in a process of its own (``--server process``, as deployed: the clients do not share
its interpreter) or as uvicorn in a thread of this process (``--server thread``, the first
version of this benchmark). Then sends the same request list twice: sequentially, then from
``--clients`` concurrent clients. Each phase stops after ``--requests`` requests or
``--duration`` seconds. Prints requests/s, p50/p99 latency, errors, the mean batch of the
server's encode calls (read from ``/health``), which shows what dynamic batching buys, and the
server process's CPU time per request (from /proc; the clients share this machine's cores).
``--url`` loads a server that is already running instead. ``--bad-every N`` makes every N-th
request one the server must refuse with a 4xx (:data:`BAD_BODIES`) and reports how the good
requests around them fare. ``--heavy-every N`` makes every N-th request a maximal one (two 7999x7999
PNGs, the request pixel budget) and reports the latency of the other requests apart from it, with the
server's RSS at the end and its peak. Not a test; the suite runs its ``--smoke`` (the tiny preset,
48 requests per phase from 4 clients, every 4th a bad one, unless those options are given).

    python benchmarks/speed/load_test.py --clients 16 --requests 300
    python benchmarks/speed/load_test.py --clients 16 --requests 300 --serve-arg=--pack-tokens=0
    python benchmarks/speed/load_test.py --clients 16 --requests 400 --heavy-every 50
    python benchmarks/speed/load_test.py --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import uvicorn
from PIL import Image

from cocoa.core.spec import EmbeddingSpec
from cocoa.inference.embedder import Embedder
from cocoa.inference.server import create_app
from cocoa.model.backbone import Backbone

WORDS = ["a", "photo", "of", "a", "red", "dress", "on", "a", "white", "background", "with", "an", "ankle", "boot", "and", "a", "sneaker", "next", "to", "a", "bag"]


@dataclass
class Phase:
    name: str
    latencies: list[float]
    errors: int
    seconds: float
    encode_calls: int | None
    server_cpu_s: float | None
    bad: int = 0
    bad_not_4xx: int = 0
    heavy: list[float] | None = None
    heavy_errors: int = 0

    def report(self) -> str:
        n = len(self.latencies)
        lat = np.array(self.latencies or [0.0]) * 1000
        return (f"{self.name:<12} {n:>6} req {n / self.seconds:>8.1f} req/s  p50 {np.percentile(lat, 50):>7.1f} ms  "
                f"p99 {np.percentile(lat, 99):>7.1f} ms  errors {self.errors}  " + (
                    "encode calls not reported" if self.encode_calls is None else
                    f"encode calls {self.encode_calls} (mean batch {n / max(self.encode_calls, 1):.1f} requests)") + (
                    "" if self.server_cpu_s is None else f"  server CPU {1000 * self.server_cpu_s / max(n, 1):.1f} ms/req") + (
                    f"  bad requests {self.bad}, answered other than 4xx {self.bad_not_4xx}" if self.bad else "") + (
                    f"  maximal requests {len(self.heavy)} (p50 {np.percentile(self.heavy, 50):.1f} s, errors "
                    f"{self.heavy_errors})" if self.heavy else ""))


def tiny_model(folder: Path, preset: str) -> Path:
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 10
    Backbone.tiny(preset, "qwen2_vl", corpus=corpus, seed=0).save(folder)
    EmbeddingSpec().save(folder)
    return folder


def thin_png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (402, 2), "white").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


#: Requests the server must refuse with a 4xx while the good ones around them keep working: a lone
#: surrogate, an image over 200:1, an instruction over the text limit, a boolean for a number.
BAD_BODIES = (
    {"input": "caf\ud800 au lait"},
    {"input": [{"text": "a thin image", "image": thin_png()}]},
    {"input": "short", "instruction": "x" * 20_000},
    {"input": "short", "dimensions": True},
)


def maximal_png(side: int = 7999) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), "white").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def make_requests(n: int, model: str, image_every: int, seed: int = 0, bad_every: int = 0,
                  heavy_every: int = 0) -> list[dict]:
    """``n`` request bodies; with ``bad_every``, every n-th is one of :data:`BAD_BODIES` (marked ``_bad``);
    with ``heavy_every``, every n-th holds two 7999x7999 PNGs (marked ``_heavy``)."""
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    heavy = maximal_png() if heavy_every else ""
    for i in range(n):
        if heavy_every and i % heavy_every == heavy_every // 2:
            out.append({"model": model, "input": [{"image": heavy}, {"image": heavy}], "_heavy": True})
            continue
        if bad_every and i % bad_every == bad_every - 1:
            out.append({"model": model, **BAD_BODIES[(i // bad_every) % len(BAD_BODIES)], "_bad": True})
            continue
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


def encode_calls(base: str) -> int | None:
    """The server's encode calls so far (``None`` for a server whose /health does not say)."""
    batching = httpx.get(f"{base}/health", timeout=30).json().get("batching")
    return None if batching is None else int(batching["encode_calls"])


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_request(base: str, body: dict) -> bytes:
    """``body`` as a complete HTTP/1.1 POST to ``/v1/embeddings``, serialised once, ahead of the phase."""
    payload = json.dumps({k: v for k, v in body.items() if not k.startswith("_")}).encode()
    return (f"POST /v1/embeddings HTTP/1.1\r\nHost: {urlsplit(base).netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


async def raw_post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one pre-serialised request on a kept-alive connection; the answer's status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split(" ", 2)[1])


async def run_phase(name: str, base: str, bodies: list[dict], clients: int, duration: float,
                    server_pid: int | None = None, client: str = "raw") -> Phase:
    latencies: list[float] = []
    heavy: list[float] = []
    errors = bad = bad_not_4xx = heavy_errors = 0
    calls_before = encode_calls(base)
    cpu_before = 0.0 if server_pid is None else process_cpu(server_pid)
    url = f"{base}/v1/embeddings"
    deadline = time.perf_counter() + duration

    async def timed(post: Callable[[Any], Awaitable[int]], pending: Iterator[tuple[Any, str]]) -> None:
        nonlocal errors, bad, bad_not_4xx, heavy_errors
        for body, kind in pending:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            try:
                status = await post(body)
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError):
                status = 0
            if kind == "bad":
                bad += 1
                bad_not_4xx += not 400 <= status < 500
                continue
            if kind == "heavy":
                heavy.append(time.perf_counter() - start)
                heavy_errors += status != 200
                continue
            latencies.append(time.perf_counter() - start)
            errors += status != 200

    async def httpx_worker(session: httpx.AsyncClient, pending: Iterator[tuple[dict, str]]) -> None:
        async def post(body: dict) -> int:
            return (await session.post(url, json={k: v for k, v in body.items() if not k.startswith("_")})).status_code

        await timed(post, pending)

    async def raw_worker(pending: Iterator[tuple[bytes, str]]) -> None:
        parts = urlsplit(base)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            await timed(lambda request: raw_post(reader, writer, request), pending)
        finally:
            writer.close()

    if client == "raw":
        pending_raw = iter([(raw_request(base, body), kind_of(body)) for body in bodies])
        start = time.perf_counter()
        await asyncio.gather(*(raw_worker(pending_raw) for _ in range(clients)))
    else:
        pending = iter([(body, kind_of(body)) for body in bodies])
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as session:
            await asyncio.gather(*(httpx_worker(session, pending) for _ in range(clients)))
    seconds = time.perf_counter() - start
    calls_after = encode_calls(base)
    calls = None if calls_before is None or calls_after is None else calls_after - calls_before
    cpu = None if server_pid is None else process_cpu(server_pid) - cpu_before
    return Phase(name, latencies, errors, seconds, calls, cpu, bad, bad_not_4xx, heavy, heavy_errors)


def kind_of(body: dict) -> str:
    return "bad" if "_bad" in body else "heavy" if "_heavy" in body else "good"


def server_memory(pid: int) -> str:
    """The server process's RSS now and its peak, from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return f"server RSS {int(status['VmRSS'].split()[0]) // 1024} MiB, peak {int(status['VmHWM'].split()[0]) // 1024} MiB"


@contextmanager
def server_process(model_dir: Path, port: int, serve_args: list[str]) -> Iterator[int | None]:
    """``cocoa serve`` in a process of its own, until the block ends; yields its pid."""
    command = [sys.executable, "-c", "from cocoa.cli import app; app()", "serve", "--model", str(model_dir),
               "--port", str(port), *serve_args]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.perf_counter() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline:
                raise SystemExit("the server did not start within 300 s")
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def server_thread(model_dir: Path, port: int, serve_args: list[str]) -> Iterator[int | None]:
    """The app under uvicorn in a thread of this process (no ``--serve-arg``)."""
    if serve_args:
        raise SystemExit("--serve-arg needs --server process")
    app = create_app(Embedder.from_pretrained(model_dir), model_name=model_dir.name)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield None
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny model built on the fly)")
    parser.add_argument("--url", help="load a server that is already running at this base URL instead "
                                      "(e.g. one started under a profiler)")
    parser.add_argument("--preset", help="tiny preset when no --model is given (default: small; tiny with --smoke)")
    parser.add_argument("--clients", type=int, help="default: 16; 4 with --smoke")
    parser.add_argument("--requests", type=int, help="requests per phase (default: 400; 48 with --smoke)")
    parser.add_argument("--duration", type=float, default=60, help="seconds per phase at most")
    parser.add_argument("--image-every", type=int, default=4, help="every n-th request has an image (0: none)")
    parser.add_argument("--bad-every", type=int,
                        help="every n-th request is one the server must refuse with a 4xx (0: none, the default; "
                             "4 with --smoke); errors then count the good requests only")
    parser.add_argument("--heavy-every", type=int, default=0,
                        help="every n-th request is a maximal one (two 7999x7999 PNGs); other requests reported apart")
    parser.add_argument("--server", choices=["process", "thread"], default="process")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="raw: HTTP/1.1 on asyncio streams with requests serialised ahead (the load generator "
                             "takes less of the cores the server runs on); httpx: the first version's client")
    parser.add_argument("--serve-arg", dest="serve_args", action="append", default=[],
                        help="an option for `cocoa serve`, e.g. --serve-arg=--max-batch=32 (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    args.preset = args.preset or ("tiny" if args.smoke else "small")
    args.clients, args.requests = args.clients or (4 if args.smoke else 16), args.requests or (48 if args.smoke else 400)
    args.bad_every = (4 if args.smoke else 0) if args.bad_every is None else args.bad_every

    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            serving, base = nullcontext(), args.url.rstrip("/")
        else:
            model_dir = args.model or tiny_model(Path(tmp) / "bench", args.preset)
            port = free_port()
            start = server_process if args.server == "process" else server_thread
            serving, base = start(model_dir, port, args.serve_args), f"http://127.0.0.1:{port}"
        with serving as server_pid:
            model = httpx.get(f"{base}/health", timeout=30).json()["model"]
            bodies = make_requests(args.requests, model, args.image_every, bad_every=args.bad_every,
                                   heavy_every=args.heavy_every)
            asyncio.run(run_phase("warmup", base, bodies[:8], 1, args.duration, client=args.client))
            where = (f"server at {base}" if args.url else
                     f"server in a {args.server}, serve options {' '.join(args.serve_args) or '(defaults)'}")
            print(f"{where}, {args.client} client, {args.requests} requests/phase, 1 in {args.image_every} with an image")
            sequential = asyncio.run(run_phase("sequential", base, bodies, 1, args.duration, server_pid,
                                                   args.client))
            print(sequential.report())
            concurrent = asyncio.run(run_phase(f"{args.clients} clients", base, bodies, args.clients, args.duration,
                                               server_pid, args.client))
            print(concurrent.report())
            if server_pid is not None:
                print(server_memory(server_pid))
        rate = [len(p.latencies) / p.seconds for p in (sequential, concurrent)]
        print(f"throughput gain from dynamic batching: {rate[1] / rate[0]:.2f}x")
        if (sequential.errors or concurrent.errors or sequential.bad_not_4xx or concurrent.bad_not_4xx
                or sequential.heavy_errors or concurrent.heavy_errors):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
