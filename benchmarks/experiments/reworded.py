"""Generalisation check for an ablation: every trained variant on MiniMMEB's held-out wordings.

``DATA/reworded/`` holds the eval sets of MiniMMEB with every query in a wording no training
row uses, which brings in a few words no training text has; ``DATA/recombined/`` the same
queries in another held-out wording made only of words the training texts contain (a new
sentence, no new words). This evaluates the final model of each (seed, variant) of a finished
``benchmarks/experiments/ablation.py`` run on one of them (``--set``), next to its score on the original
wording, and writes ``<set>.json`` and ``<set>.md`` (mean, spread and 95% interval over
seeds, and the paired difference to the first variant) into the ablation folder.

    python benchmarks/experiments/reworded.py --ablation runs/abl-v2 --data runs/mini/data --variants a d
    python benchmarks/experiments/reworded.py --ablation runs/abl-v2 --data runs/mini/data --variants a d --set recombined
    python benchmarks/experiments/reworded.py --smoke [--ablation DIR]

``--smoke`` reads the ablation smoke run in ``--ablation`` (made there first when it holds none; a
temporary folder by default) on a tiny MiniMMEB (built unless ``--data`` is given) and evaluates the
held-out wordings of the five sets that run evaluated, for its variants a and c: seconds long.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ablation import GROUPS, aggregate, group_scores, interval_lines, paired, table_lines
from ablation import main as run_ablation

from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import SMOKE_DATASETS, smoke_data, smoke_folder


def reworded_scores(data: Path, seed_dir: Path, variant: str, held_out: str,
                    datasets: list[str] | None = None) -> dict[str, float] | None:
    """The variant's group scores on the ``held_out`` sets (``datasets``, default all; evaluated once, then
    read back), if it was trained."""
    record = seed_dir / f"eval-{variant}" / "model.json"
    if not record.is_file():
        return None
    model = Path(json.loads(record.read_text())["model"])
    summary = evaluate(BatchEncoder.from_pretrained(model), data / held_out, seed_dir / f"{held_out}-{variant}",
                       datasets=datasets, image_root=data / "images", batch_size=64)
    return group_scores(summary.to_dict())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ablation", type=Path, help="the --out folder of benchmarks/experiments/ablation.py")
    parser.add_argument("--data", type=Path, help="MiniMMEB folder (default: runs/mini/data; with --smoke a tiny one)")
    parser.add_argument("--variants", nargs="+", help="default: a d; a c with --smoke")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: every seed folder")
    parser.add_argument("--set", dest="held_out", choices=("reworded", "recombined"), default="reworded",
                        help="reworded: held-out wordings with a few unseen words; recombined: held-out wordings "
                             "of seen words only")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    datasets = None
    if args.smoke:
        args.ablation = smoke_folder(args.ablation, "reworded")
        args.data = args.data or smoke_data(args.ablation / "data")
        if not any(args.ablation.glob("seed*/eval-*/model.json")):
            run_ablation(["--smoke", "--data", str(args.data), "--out", str(args.ablation)])
        datasets = SMOKE_DATASETS
    elif args.ablation is None:
        parser.error("--ablation is required without --smoke")
    args.data = args.data or Path("runs/mini/data")
    args.variants = args.variants or (["a", "c"] if args.smoke else ["a", "d"])
    seeds = args.seeds if args.seeds is not None else sorted(
        int(p.name[4:]) for p in args.ablation.glob("seed*") if p.name[4:].isdigit())
    original: dict[str, list[dict[str, float]]] = {key: [] for key in args.variants}
    reworded: dict[str, list[dict[str, float]]] = {key: [] for key in args.variants}
    done = []
    for seed in seeds:
        seed_dir = args.ablation / f"seed{seed}"
        scores = {key: reworded_scores(args.data, seed_dir, key, args.held_out, datasets) for key in args.variants}
        if any(value is None for value in scores.values()):
            continue
        done.append(seed)
        for key in args.variants:
            reworded[key].append(scores[key])
            summary = json.loads((seed_dir / f"eval-{key}" / "summary.json").read_text())
            original[key].append(group_scores(summary))
    drop = {key: [{g: o[g] - r[g] for g in GROUPS} for o, r in zip(original[key], reworded[key], strict=True)]
            for key in args.variants}
    first = args.variants[0]
    name = args.held_out
    what = ("a wording no training row uses" if name == "reworded" else
            "a wording no training row uses, made of words the training texts contain")
    lines = [f"Seeds: {done}. Eval sets {args.data / name}: {what}.", "",
             *table_lines(aggregate(reworded), f"variant, {name}"), "",
             f"Mean ± sample standard deviation over seeds of Precision@1 (%) on the {name} sets.", "",
             *table_lines(aggregate(drop), f"variant, original minus {name}", "+"), "",
             "The loss from rewording: original-wording score minus the held-out wording's score, same model."]
    if len(args.variants) > 1:
        differences = paired(reworded)
        lines += ["", *table_lines(differences, f"{name}, minus ({first}), same seed", "+"), "",
                  *interval_lines(differences, f"{name}, minus ({first}), 95% interval")]
    (args.ablation / f"{name}.md").write_text("\n".join(lines) + "\n")
    (args.ablation / f"{name}.json").write_text(json.dumps({"seeds": done, name: reworded,
                                                            "original": original}, indent=2))
    print((args.ablation / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
