"""Corpus scale (not a test): `cocoa encode` into shards and `cocoa index build --shards`, timed with peak RSS.

``encode``: writes a JSONL corpus of ``--sizes`` rows (captions of 8-30 words; ``--image-share``
of the rows also name one of 100 small PNGs), saves the tiny model, and runs ``cocoa encode``
into a shard folder on 1 process and on ``--ranks`` torchrun ranks. It prints items/s and the
peak RSS of the largest process (rank). Memory should not grow with the corpus.

``index``: writes ``--vectors`` clustered unit vectors of ``--dim`` features as shards (the
format ``cocoa encode`` writes) and runs ``cocoa index build --shards`` for each ``--kinds``,
printing build time, peak RSS, index size and the recall@10 it measured against exact search.

    python benchmarks/scale/corpus_scale.py encode --sizes 10000 100000 --ranks 2
    python benchmarks/scale/corpus_scale.py index --vectors 1000000 --dim 128 --kinds flat hnsw ivfpq
    python benchmarks/scale/corpus_scale.py encode --smoke     # 32 rows, one process
    python benchmarks/scale/corpus_scale.py index --smoke      # 10000 vectors of 16 features, every kind

On a GPU machine the same ``encode`` command measures ranks x items/s (``--ranks`` = GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = ("red", "blue", "small", "large", "dress", "boot", "bag", "photo", "dog", "street", "river", "old", "new",
         "wooden", "metal", "bright", "dark", "shirt", "table", "chair", "window", "garden", "city", "night")
#: Runs a command and prints the peak RSS (KiB) of the largest process it started, ranks included.
PEAK_RSS = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """``(seconds, peak RSS in MiB, stderr)`` of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024, proc.stderr


def write_corpus(path: Path, rows: int, image_share: float, images: list[str]) -> None:
    rng = np.random.default_rng(0)
    with path.open("w") as f:
        for i in range(rows):
            row = {"id": f"doc{i}", "text": " ".join(rng.choice(WORDS, rng.integers(8, 31)))}
            if rng.random() < image_share:
                row["image"] = images[i % len(images)]
            f.write(json.dumps(row) + "\n")


def encode(args: argparse.Namespace, root: Path, env: dict[str, str]) -> None:
    from cocoa.core.spec import EmbeddingSpec
    from cocoa.model.backbone import Backbone

    model = root / "model"
    Backbone.tiny("tiny").save(model)
    EmbeddingSpec().save(model)
    rng = np.random.default_rng(1)
    images = []
    for n in range(100):
        name = f"img{n}.png"
        Image.fromarray((rng.random((56, 56, 3)) * 255).astype("uint8")).save(root / name)
        images.append(name)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    print("| rows | processes | seconds | items/s | peak RSS per process (MiB) |\n|---|---|---|---|---|")
    for size in args.sizes:
        corpus = root / f"corpus-{size}.jsonl"
        write_corpus(corpus, size, args.image_share, images)
        for ranks in sorted({1, args.ranks}):
            out = root / f"shards-{size}-{ranks}"
            command = ["encode", "--model", str(model), "--input", str(corpus), "--out", str(out),
                       "--batch-size", str(args.batch_size)]
            launch = ([sys.executable, "-m", "cocoa"] if ranks == 1 else
                      [torchrun, "--nproc_per_node", str(ranks), "-m", "cocoa"])
            seconds, rss, _ = measured([*launch, *command], {**env, "OMP_NUM_THREADS": str(max(1, args.threads // ranks))})
            print(f"| {size} | {ranks} | {seconds:.1f} | {size / seconds:.0f} | {rss:.0f} |", flush=True)
            shutil.rmtree(out)


def index(args: argparse.Namespace, root: Path, env: dict[str, str]) -> None:
    from cocoa.inference.shards import ShardedOutput, ShardPlan

    shard = 10_000
    plan = ShardPlan("synthetic", args.dim, shard, {"path": "synthetic", "kind": "jsonl", "rows": args.vectors})
    output = ShardedOutput(root / "shards", plan)
    output.start()
    centres = np.random.default_rng(0).standard_normal((1000, args.dim)).astype(np.float32)
    rng = np.random.default_rng(1)
    for k in range(plan.num_shards):
        n = plan.shard_rows(k)
        vectors = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, args.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        first = plan.first_row(k)
        output.write(k, [f"v{first + i}" for i in range(n)], [{"n": first + i} for i in range(n)], vectors)
    output.finish()
    print(f"{args.vectors} vectors of {args.dim} features (1000 clusters), shards of {shard}; "
          f"{args.threads} threads; nprobe {args.nprobe or 'default'}, ef_search {args.ef_search or 'default'}\n")
    print("| kind | build s | peak RSS (MiB) | index.faiss (MiB) | recall@10 |\n|---|---|---|---|---|")
    for kind in args.kinds:
        out = root / f"index-{kind}"
        search = [f"--{name}={value}" for name, value in (("nprobe", args.nprobe), ("ef-search", args.ef_search))
                  if value is not None]
        seconds, rss, _ = measured([sys.executable, "-m", "cocoa", "index", "build", "--shards", str(root / "shards"),
                                    "--out", str(out), "--kind", kind, *search],
                                   {**env, "OMP_NUM_THREADS": str(args.threads)})
        meta = json.loads((out / "meta.json").read_text())
        size = (out / "index.faiss").stat().st_size / 2**20
        recall = "exact" if meta["recall@10"] is None else f"{meta['recall@10']:.3f}"
        print(f"| {kind} | {seconds:.0f} | {rss:.0f} | {size:.0f} | {recall} |", flush=True)
        shutil.rmtree(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    enc = sub.add_parser("encode")
    enc.add_argument("--sizes", type=int, nargs="+", help="default: 10000 100000; 32 with --smoke")
    enc.add_argument("--ranks", type=int, help="default: 2; 1 with --smoke")
    enc.add_argument("--image-share", type=float, default=0.1)
    enc.add_argument("--batch-size", type=int, default=32)
    idx = sub.add_parser("index")
    idx.add_argument("--vectors", type=int, help="default: 1000000; 10000 with --smoke")
    idx.add_argument("--dim", type=int, help="default: 128; 16 with --smoke")
    idx.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    idx.add_argument("--nprobe", type=int, help="IVF lists searched per query (default: cocoa's)")
    idx.add_argument("--ef-search", type=int, help="HNSW search breadth (default: cocoa's)")
    for p in (enc, idx):
        p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
        p.add_argument("--smoke", action="store_true", help="seconds long: see the usage above")
    args = parser.parse_args(argv)
    if args.what == "encode":
        args.sizes = args.sizes or ([32] if args.smoke else [10_000, 100_000])
        args.ranks = args.ranks or (1 if args.smoke else 2)
    else:
        args.vectors = args.vectors or (10_000 if args.smoke else 1_000_000)
        args.dim = args.dim or (16 if args.smoke else 128)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        (encode if args.what == "encode" else index)(args, Path(tmp), env)


if __name__ == "__main__":
    main()
