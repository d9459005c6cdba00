"""How compact and well spread are the EOS embeddings? (analysis, not a test)

For each model, embeds the queries and gold candidates of up to ``--rows`` rows of every
eval dataset and reports:
  effective rank   exp(entropy of the normalised singular values) of the embedding matrix
  alignment        mean ||f(q) - f(gold)||^2 over query/gold pairs (lower is better)
  uniformity       log mean exp(-2 ||f(x) - f(y)||^2) over all item pairs (lower is better)
and plots the singular-value spectra and the alignment/uniformity plane.

    python benchmarks/experiments/compactness.py --data runs/mini/data \
        --model a=runs/ablation/seed0/contrastive-attention/model --model d=runs/ablation/seed0/warmup+bridge+contrastive/model
    python benchmarks/experiments/compactness.py --smoke

``--smoke`` measures two randomly initialised tiny models on 2 rows of five sets of a tiny MiniMMEB
(built unless ``--data`` is given) and writes into a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from cocoa.data.eval_sets import list_eval_datasets, read_eval_dataset
from cocoa.data.items import Item
from cocoa.inference.batch_encoder import BatchEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import SMOKE_DATASETS, smoke_data, smoke_folder, smoke_model


def pairs(data: Path, rows: int, datasets: list[str] | None = None) -> tuple[list[Item], list[Item]]:
    """The query and gold candidate of the first ``rows`` rows of each eval set (``datasets``, default all)."""
    queries, golds = [], []
    for name in datasets or list_eval_datasets(data):
        dataset = read_eval_dataset(data, name, data / "images")
        for row in dataset.rows[:rows]:
            queries.append(row.query)
            golds.append(row.candidates[0])
    return queries, golds


def metrics(q: np.ndarray, t: np.ndarray) -> dict:
    both = torch.from_numpy(np.concatenate([q, t]))
    singular = torch.linalg.svdvals(both)
    p = singular / singular.sum()
    effective_rank = float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))
    alignment = float(((torch.from_numpy(q) - torch.from_numpy(t)) ** 2).sum(1).mean())
    dist = torch.cdist(both, both).pow(2)
    off = ~torch.eye(len(both), dtype=torch.bool)
    uniformity = float(torch.log(torch.exp(-2 * dist[off]).mean()))
    return {"effective_rank": effective_rank, "dim": int(both.shape[1]), "alignment": alignment,
            "uniformity": uniformity, "spectrum": (singular / singular[0]).tolist()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="MiniMMEB folder (default: runs/mini/data; with --smoke a tiny one)")
    parser.add_argument("--model", action="append", default=[], help="LABEL=DIR, repeatable")
    parser.add_argument("--rows", type=int, help="rows per eval set (default: 100; 2 with --smoke)")
    parser.add_argument("--datasets", nargs="+", help="eval sets (default: all; five small ones with --smoke)")
    parser.add_argument("--out", type=Path, help="default: docs/figures; with --smoke a temporary folder")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.smoke:
        args.out = smoke_folder(args.out, "compactness")
        args.data = args.data or smoke_data(args.out / "data")
        args.model = args.model or [f"seed{seed}={smoke_model(args.out / f'model{seed}', seed)}" for seed in (0, 1)]
    elif not args.model:
        parser.error("--model is required without --smoke")
    args.data, args.out = args.data or Path("runs/mini/data"), args.out or Path("docs/figures")
    args.rows = args.rows or (2 if args.smoke else 100)
    queries, golds = pairs(args.data, args.rows, args.datasets or (SMOKE_DATASETS if args.smoke else None))
    results = {}
    for spec in args.model:
        label, folder = spec.split("=", 1)
        encoder = BatchEncoder.from_pretrained(folder, device="cpu")
        q = encoder.encode_items(queries, batch_size=64)
        t = encoder.encode_items(golds, batch_size=64)
        results[label] = metrics(q, t)
        r = results[label]
        print(f"{label}: effective rank {r['effective_rank']:.1f} of {r['dim']}, alignment {r['alignment']:.3f}, "
              f"uniformity {r['uniformity']:.3f} ({len(queries)} pairs)")
    args.out.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, r in results.items():
        left.semilogy(r["spectrum"], label=f"{label} (eff. rank {r['effective_rank']:.1f})")
        right.scatter(r["uniformity"], r["alignment"], s=40)
        right.annotate(label, (r["uniformity"], r["alignment"]))
    left.set_xlabel("singular value index")
    left.set_ylabel("singular value / largest")
    left.legend()
    right.set_xlabel("uniformity (lower is better)")
    right.set_ylabel("alignment (lower is better)")
    fig.tight_layout()
    fig.savefig(args.out / "compactness.png", dpi=110)
    (args.out / "compactness.json").write_text(json.dumps(
        {label: {k: v for k, v in r.items() if k != "spectrum"} for label, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
