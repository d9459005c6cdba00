"""Evaluator speed on a benchmark folder: cached, de-duplicated evaluation vs naive vs encode-once.

Usage: python benchmarks/eval_speed.py --model MODEL_DIR --data MINIMMEB_DIR [--datasets A,B]
       [--batch-size 32] [--naive-queries 5]

Targets: the evaluator is >= 3x faster than a naive evaluator that encodes every query's
candidates anew, and within 1.2x of encoding each unique item once. The naive time is an
estimate: a few queries per dataset are timed and the per-query time is extrapolated.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from cocoa.data.items import EvalDataset, Item
from cocoa.data.mmeb import list_eval_datasets, read_eval_dataset
from cocoa.evaluate.cli import load_encoder
from cocoa.evaluate.registry import resolve_benchmark
from cocoa.evaluate.runner import ItemEncoder, evaluate, select_datasets


def load_datasets(data: Path, names: list[str] | None, image_root: Path) -> list[EvalDataset]:
    """The selected eval datasets of ``data``."""
    chosen = select_datasets(resolve_benchmark(data), list_eval_datasets(data), names)
    return [read_eval_dataset(data, name, image_root) for name in chosen]


def unique_items(datasets: list[EvalDataset]) -> list[Item]:
    """Every distinct item (by key) over all datasets."""
    seen: dict[tuple[str, str], Item] = {}
    for dataset in datasets:
        for row in dataset.rows:
            for item in (row.query, *row.candidates):
                seen.setdefault(item.key(), item)
    return list(seen.values())


def time_naive(encoder: ItemEncoder, datasets: list[EvalDataset], queries: int, batch_size: int) -> float:
    """Estimated seconds for encoding each row's query and candidates anew (timed subset, extrapolated)."""
    total = 0.0
    for dataset in datasets:
        sample = dataset.rows[:queries]
        started = time.perf_counter()
        for row in sample:
            emb = encoder.encode_items([row.query, *row.candidates], batch_size=batch_size)
            int(np.argmax(emb[1:] @ emb[0]))
        total += (time.perf_counter() - started) / len(sample) * len(dataset.rows)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--datasets", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--naive-queries", type=int, default=5, help="queries timed per dataset for the naive estimate")
    args = parser.parse_args()

    image_root = args.images or (args.data / "images" if (args.data / "images").is_dir() else args.data)
    names = args.datasets.split(",") if args.datasets else None
    encoder = load_encoder(args.model)
    datasets = load_datasets(args.data, names, image_root)
    items = unique_items(datasets)
    encoder.encode_items(items[: 2 * args.batch_size], batch_size=args.batch_size)

    started = time.perf_counter()
    encoder.encode_items(items, batch_size=args.batch_size)
    once = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = evaluate(encoder, args.data, Path(out), [d.name for d in datasets], image_root,
                           args.batch_size, show_progress=False)
        evaluator = time.perf_counter() - started

    naive = time_naive(encoder, datasets, args.naive_queries, args.batch_size)
    rows = sum(len(d.rows) for d in datasets)
    table = Table("measure", "seconds", "items/s", "vs evaluator", title=f"{len(datasets)} datasets, {rows} queries")
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
