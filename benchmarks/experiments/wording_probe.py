"""Wording probe: one MiniMMEB eval set asked again in other wordings, for each of some models.

A diagnostic for the held-out-wording checks (not a test; the suite runs its ``--smoke``). Each
probe is a format string with ``{img}`` for the image placeholder (and ``{x}`` for the query's own
text, when the task has one); every query of ``--dataset`` is reworded with it (the query's own text
kept), the copy is written under ``--out`` and evaluated with the usual evaluator. Prints one
markdown row per probe, one column per model.

    python benchmarks/experiments/wording_probe.py --dataset FashionMNIST --wordings CLASSIFY \\
        --model runs/mini/3-contrastive/model -- $'{img} Find the category of this image.\\n'
    python benchmarks/experiments/wording_probe.py --smoke

``--smoke`` asks that probe of a randomly initialised tiny model on a tiny MiniMMEB (built unless
``--data`` is given), into a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.data.minimmeb import wordings
from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import smoke_data, smoke_folder, smoke_model

SMOKE_PROBE = "{img} Find the category of this image.\n"


def reworded_copy(data: Path, dataset: str, wording: wordings.Wordings, probe: str, folder: Path) -> Path:
    """``folder`` holding ``dataset``'s eval set with every query in ``probe``, and its card."""
    table = pq.read_table(data / "eval" / f"{dataset}.parquet")
    texts = [wording.reword(text, probe) for text in table.column("qry_text").to_pylist()]
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.set_column(table.schema.get_field_index("qry_text"), "qry_text", pa.array(texts)),
                   folder / f"{dataset}.parquet")
    card = data / "recombined" / f"{dataset}.card.json"
    (folder / card.name).write_bytes(card.read_bytes())
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", default=[])
    parser.add_argument("--data", type=Path, help="MiniMMEB folder (default: runs/mini/data; with --smoke a tiny one)")
    parser.add_argument("--dataset", default="FashionMNIST")
    parser.add_argument("--wordings", default="CLASSIFY", help="the dataset's Wordings in cocoa.data.minimmeb.wordings")
    parser.add_argument("--out", type=Path, help="default: runs/wording-probe; with --smoke a temporary folder")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    parser.add_argument("probes", nargs="*", help="wordings to ask the queries in")
    args = parser.parse_args(argv)
    if args.smoke:
        args.out = smoke_folder(args.out, "wording-probe")
        args.data = args.data or smoke_data(args.out / "data")
        args.model, args.probes = args.model or [smoke_model(args.out / "model")], args.probes or [SMOKE_PROBE]
    elif not args.model or not args.probes:
        parser.error("--model and at least one probe are required without --smoke")
    args.data, args.out = args.data or Path("runs/mini/data"), args.out or Path("runs/wording-probe")
    wording = getattr(wordings, args.wordings)
    scores = {probe: [] for probe in args.probes}
    for m, model in enumerate(args.model):
        encoder = BatchEncoder.from_pretrained(model)
        for p, probe in enumerate(args.probes):
            folder = reworded_copy(args.data, args.dataset, wording, probe, args.out / f"probe{p}" / "data")
            summary = evaluate(encoder, folder, args.out / f"probe{p}" / f"model{m}", image_root=args.data / "images",
                               batch_size=64).to_dict()
            scores[probe].append(summary["datasets"][args.dataset]["score"])
    print(f"{args.dataset} P@1 (%) per wording\n")
    print("| wording | " + " | ".join(str(model) for model in args.model) + " |")
    print("|---|" + "---|" * len(args.model))
    for probe, row in scores.items():
        print(f"| `{probe.strip()}` | " + " | ".join(f"{score:.1f}" for score in row) + " |")


if __name__ == "__main__":
    main()
