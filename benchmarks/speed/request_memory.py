"""Memory of the embedding server under maximal image requests: RSS before, at peak and after.

Builds a tiny model, serves it in this process (FastAPI's TestClient, no network), and sends
requests of 7999x7999 PNGs (about 186 kB each, within every per-image limit): one over the
request pixel budget (``--over`` images), which must be refused before any is decoded, and one
within it (``--within`` images, three times: memory must not grow from one to the next). Prints the status, seconds and the process RSS (now, and the
peak from ``getrusage``) after each. Not a test; not run by CI.

    python benchmarks/speed/request_memory.py --over 24 --within 2
"""

from __future__ import annotations

import argparse
import base64
import io
import resource
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image


def rss_mib() -> float:
    """The resident set size of this process now, in MiB (from /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def big_png(side: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), "white").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=7999)
    parser.add_argument("--over", type=int, default=24)
    parser.add_argument("--within", type=int, default=2)
    args = parser.parse_args()

    from cocoa.core.spec import EmbeddingSpec
    from cocoa.inference.embedder import Embedder
    from cocoa.inference.server import create_app
    from cocoa.model.backbone import Backbone

    folder = Path(tempfile.mkdtemp()) / "model"
    Backbone.tiny().save(folder)
    EmbeddingSpec().save(folder)
    app = create_app(Embedder.from_pretrained(folder), model_name="tiny")
    image = big_png(args.side)
    print(f"one {args.side}x{args.side} PNG: {len(image) * 3 // 4 // 1024} kB; settings: "
          f"max_request_pixels {app.state.limits.max_request_pixels}, keep_pixels {app.state.limits.keep_pixels}")
    with TestClient(app) as client:
        client.post("/v1/embeddings", json={"model": "tiny", "input": "warm up"})
        print(f"baseline: RSS {rss_mib():.0f} MiB, peak {peak_mib():.0f} MiB")
        for count in (args.over, args.within, args.within, args.within):
            started = time.perf_counter()
            response = client.post("/v1/embeddings", json={"model": "tiny", "input": [{"image": image}] * count})
            print(f"{count} images: {response.status_code} in {time.perf_counter() - started:.1f} s; "
                  f"RSS after {rss_mib():.0f} MiB, peak {peak_mib():.0f} MiB"
                  + (f"; {response.json()['error']['message']}" if response.status_code != 200 else ""))


if __name__ == "__main__":
    main()
