"""Evaluator speed on a benchmark folder: cached, de-duplicated evaluation vs naive vs encode-once.

Usage: python benchmarks/speed/eval_speed.py --model MODEL_DIR --data MINIMMEB_DIR [--datasets A,B]
       [--batch-size 32] [--naive-queries 5] [--repeat 1]
       python benchmarks/speed/eval_speed.py --smoke [--data MINIMMEB_DIR]

Targets: the evaluator is >= 3x faster than a naive evaluator that encodes every query's
candidates anew, and within 1.2x of encoding each unique item once. The naive time is an
estimate: a few queries per dataset are timed and the per-query time is extrapolated. On a
busy machine, ``--repeat N`` alternates encode-once and the evaluator N times and keeps the
best time of each.

``--smoke``: a randomly initialised tiny model (unless ``--model`` is given) on two small sets of a tiny
MiniMMEB (unless ``--data`` is given), each made in a temporary folder, one naive query per set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from cocoa.data.eval_sets import list_eval_datasets, read_eval_dataset
from cocoa.data.items import EvalDataset, Item
from cocoa.evaluate.encoder import load_encoder
from cocoa.evaluate.plan import select_datasets
from cocoa.evaluate.registry import resolve_benchmark
from cocoa.evaluate.runner import ItemEncoder, evaluate
from cocoa.evaluate.summary import Summary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import SMOKE_DATASETS, smoke_data, smoke_folder, smoke_model


def load_datasets(data: Path, names: list[str] | None, image_root: Path) -> list[EvalDataset]:
    """The selected eval datasets of ``data``."""
    chosen = select_datasets(resolve_benchmark(data), list_eval_datasets(data), names)
    return [read_eval_dataset(data, name, image_root) for name in chosen]


def unique_items(datasets: list[EvalDataset]) -> list[Item]:
    """Every distinct item (by key) over all datasets."""
    seen: dict[tuple[str, str], Item] = {}
    for dataset in datasets:
        for item in dataset.items:
            seen.setdefault(item.key(), item)
    return list(seen.values())


def time_once(encoder: ItemEncoder, items: list[Item], batch_size: int) -> float:
    """Seconds to encode ``items`` in one call."""
    started = time.perf_counter()
    encoder.encode_items(items, batch_size=batch_size)
    return time.perf_counter() - started


def time_evaluator(encoder: ItemEncoder, data: Path, datasets: list[EvalDataset], image_root: Path,
                   batch_size: int) -> tuple[float, Summary]:
    """Seconds for the evaluator with a fresh cache and output folder, and its summary."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = evaluate(encoder, data, Path(out), [d.name for d in datasets], image_root, batch_size,
                           show_progress=False)
        return time.perf_counter() - started, summary


def time_naive(encoder: ItemEncoder, datasets: list[EvalDataset], queries: int, batch_size: int) -> float:
    """Estimated seconds for encoding each row's query and candidates anew (timed subset, extrapolated)."""
    total = 0.0
    for dataset in datasets:
        sample = dataset.rows[:queries]
        started = time.perf_counter()
        for row in sample:
            emb = encoder.encode_items([row.query, *row.candidates], batch_size=batch_size)
            int(np.argmax(emb[1:] @ emb[0]))
        total += (time.perf_counter() - started) / len(sample) * len(dataset.queries)
    return total


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--datasets", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--naive-queries", type=int, help="queries timed per dataset for the naive estimate "
                        "(default: 5; 1 with --smoke)")
    parser.add_argument("--repeat", type=int, default=1, help="alternate encode-once and the evaluator N times; "
                        "the best time of each is reported")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model = args.model or smoke_model(smoke_folder(None, "eval-speed") / "model")
        args.data = args.data or smoke_data(smoke_folder(None, "eval-speed") / "data")
        args.datasets = args.datasets or ",".join(SMOKE_DATASETS[:2])
    elif args.model is None or args.data is None:
        parser.error("--model and --data are required without --smoke")
    args.naive_queries = args.naive_queries or (1 if args.smoke else 5)

    image_root = args.images or (args.data / "images" if (args.data / "images").is_dir() else args.data)
    names = args.datasets.split(",") if args.datasets else None
    encoder = load_encoder(args.model)
    datasets = load_datasets(args.data, names, image_root)
    items = unique_items(datasets)
    encoder.encode_items(items[: 2 * args.batch_size], batch_size=args.batch_size)

    once_times, evaluator_times = [], []
    for _ in range(max(1, args.repeat)):
        once_times.append(time_once(encoder, items, args.batch_size))
        seconds, summary = time_evaluator(encoder, args.data, datasets, image_root, args.batch_size)
        evaluator_times.append(seconds)
    once, evaluator = min(once_times), min(evaluator_times)

    naive = time_naive(encoder, datasets, args.naive_queries, args.batch_size)
    rows = sum(len(d.queries) for d in datasets)
    best = f", best of {len(once_times)}" if len(once_times) > 1 else ""
    table = Table("measure", "seconds", "items/s", "vs evaluator",
                  title=f"{len(datasets)} datasets, {rows} queries{best}")
    table.add_row("encode each unique item once", f"{once:.1f}", f"{len(items) / once:.1f}", f"{once / evaluator:.2f}x")
    table.add_row("evaluator (fresh cache)", f"{evaluator:.1f}", f"{summary.encoded / evaluator:.1f}", "1.00x")
    table.add_row(f"naive (estimated from {args.naive_queries} queries/dataset)", f"{naive:.1f}", "-",
                  f"{naive / evaluator:.2f}x")
    console = Console()
    console.print(table)
    console.print(f"unique items {len(items)}, encoded by the evaluator {summary.encoded}; "
                  f"speed-up over naive {naive / evaluator:.2f}x (target >= 3x, "
                  f"{'met' if naive >= 3 * evaluator else 'NOT met'}); evaluator / encode-once "
                  f"{evaluator / once:.2f}x (target <= 1.2x, {'met' if evaluator <= 1.2 * once else 'NOT met'}). "
                  "The naive time is extrapolated from a timed subset of queries.")


if __name__ == "__main__":
    main()
