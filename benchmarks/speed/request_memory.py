"""Memory of the embedding server under maximal image requests: RSS before, at peak and after.

Builds a tiny model, serves it in this process (FastAPI's TestClient, no network), and sends
requests of 7999x7999 PNGs (about 198 KiB each, within every per-image limit): one over the
request pixel budget (``--over`` images), which must be refused before any is decoded, and one
within it (``--within`` images, three times: memory must not grow from one to the next). Prints
the status, seconds and the process RSS after each (now, and the peak during the request, from
``/proc/self/status`` with the peak reset before it), and the bound
:meth:`ServerSettings.image_bytes_bound` gives for one request in flight. ``--json`` prints one
JSON object per line instead (``tests/inference/test_server_memory.py`` reads them). Linux only.

    python benchmarks/speed/request_memory.py --over 24 --within 2
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

MIB = 1 << 20


def status_mib(key: str) -> float:
    """A size from /proc/self/status (``VmRSS``: resident now; ``VmHWM``: peak since the last reset), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def reset_peak() -> None:
    """Start the peak (``VmHWM``) again from the current RSS (Linux's ``clear_refs``)."""
    Path("/proc/self/clear_refs").write_text("5")


def big_png(side: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), "white").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def describe(record: dict, side: int) -> str:
    if "settings" in record:
        return (f"one {side}x{side} PNG: {record['png_kib']} KiB; settings: {record['settings']}; "
                f"bound for one request in flight: {record['bound_mib']:.0f} MiB")
    if "images" in record:
        return (f"{record['images']} images: {record['status']} in {record['seconds']:.1f} s; RSS after "
                f"{record['rss_mib']:.0f} MiB, peak {record['peak_mib']:.0f} MiB {record.get('message', '')}")
    return f"baseline: RSS {record['rss_mib']:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=7999)
    parser.add_argument("--over", type=int, default=24)
    parser.add_argument("--within", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()

    from cocoa.core.spec import EmbeddingSpec
    from cocoa.inference.embedder import Embedder
    from cocoa.inference.server import create_app
    from cocoa.model.backbone import Backbone

    def report(record: dict) -> None:
        print(json.dumps(record) if args.json else describe(record, args.side), flush=True)

    folder = Path(tempfile.mkdtemp()) / "model"
    Backbone.tiny().save(folder)
    EmbeddingSpec().save(folder)
    app = create_app(Embedder.from_pretrained(folder), model_name="tiny")
    limits = app.state.limits
    image = big_png(args.side)
    report({"settings": {"max_request_pixels": limits.max_request_pixels, "keep_pixels": limits.keep_pixels,
                         "max_image_pixels": limits.max_image_pixels, "preprocess_threads": limits.preprocess_threads},
            "png_kib": len(image) * 3 // 4 // 1024, "bound_mib": limits.image_bytes_bound(1) / MIB})
    with TestClient(app) as client:
        client.post("/v1/embeddings", json={"model": "tiny", "input": "warm up"})
        report({"baseline": True, "rss_mib": status_mib("VmRSS")})
        for count in (args.over, args.within, args.within, args.within):
            reset_peak()
            started = time.perf_counter()
            response = client.post("/v1/embeddings", json={"model": "tiny", "input": [{"image": image}] * count})
            record = {"images": count, "status": response.status_code, "seconds": time.perf_counter() - started,
                      "rss_mib": status_mib("VmRSS"), "peak_mib": status_mib("VmHWM")}
            if response.status_code != 200:
                record["message"] = response.json()["error"]["message"]
            report(record)


if __name__ == "__main__":
    main()
