"""Encode time of one batch, padded vs packed rows (``Packing().embed`` against ``Packing(N).embed``), by batch size.

Uses the load test's requests (random texts of 4-40 words, 1 in 4 with an 84x84 image) and
model (a tiny preset built on the fly); checks that both give the same embeddings. Not a test.

    python benchmarks/speed/packing_speed.py --sizes 1 8 16 32 64 --pack-tokens 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from load_test import make_requests, tiny_model

from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.inference.embedder import Embedder
from cocoa.inference.server import parse_input
from cocoa.inference.settings import DEFAULTS


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    parser.add_argument("--pack-tokens", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per cell (median reported)")
    parser.add_argument("--smoke", action="store_true", help="seconds long: the tiny preset, batches of 1 and 4, one run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.sizes, args.repeat = "tiny", [1, 4], 1
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp), args.preset)
        embedder = Embedder.from_pretrained(model, device="cpu")
        encoders = {pack: BatchEncoder(embedder.encoder.backbone, embedder.encoder.spec, device="cpu", pack_tokens=pack)
                    for pack in (None, args.pack_tokens)}
        inputs = [b["input"][0] for b in make_requests(max(args.sizes), "bench", 4)]
        items = [parse_input(v, None, None, DEFAULTS, f"request {i}") if isinstance(v, str)
                 else parse_input(v["text"], v["image"], None, DEFAULTS, f"request {i}") for i, v in enumerate(inputs)]
        seqs = [embedder.encoder.preprocessor.embedding_sequence(item) for item in items]
        print(f"pack_tokens {args.pack_tokens}; median of {args.repeat}")
        print(f"{'batch':>5} {'tokens':>6} {'padded':>8} {'padded ms':>10} {'packed ms':>10} {'speedup':>8} {'max diff':>9}")
        for n in args.sizes:
            times: dict[int | None, list[float]] = {None: [], args.pack_tokens: []}
            out = {}
            for _ in range(args.repeat):
                for pack in times:
                    start = time.perf_counter()
                    out[pack] = encoders[pack].encode_sequences(seqs[:n], batch_size=n)
                    times[pack].append(time.perf_counter() - start)
            padded, packed = (float(np.median(times[k])) * 1000 for k in times)
            tokens = sum(len(s) for s in seqs[:n])
            width = n * max(len(s) for s in seqs[:n])
            diff = float(np.abs(out[None] - out[args.pack_tokens]).max())
            print(f"{n:>5} {tokens:>6} {width:>8} {padded:>10.1f} {packed:>10.1f} {padded / packed:>7.2f}x {diff:>9.1e}")


if __name__ == "__main__":
    main()
