"""Matryoshka on MiniMMEB: the score per embedding width, with and without multi-width training.

Trains stage 3 twice from the same model with the same seed: once with the multi-width
InfoNCE (``contrastive.matryoshka``) over ``--dims``, once with the plain full-width loss,
then evaluates both at every width of ``--dims`` (truncated and re-normalised), so each
width compares Matryoshka training against plain truncation. A stage already trained is
skipped and the evaluator resumes, so a rerun continues. Writes ``matryoshka.json`` and
``matryoshka.md`` under ``--out``.

    python benchmarks/experiments/matryoshka.py --data runs/mini/data --base runs/mini/2-bridge/model \\
        --out runs/matryoshka --dims 24 48 96
    python benchmarks/experiments/matryoshka.py --smoke

``--smoke`` starts from a randomly initialised tiny model, trains one step of four rows per variant
on a tiny MiniMMEB (built unless ``--data`` is given) and evaluates widths 48 and 96 on two small
sets, into a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cocoa.evaluate.dims import dims_scores, evaluate_dims
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.pipeline.train_stage import train_stage
from cocoa.recipe import builtin, load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import SMOKE_DATASETS, command_line, smoke_data, smoke_folder, smoke_model, smoke_sets

VARIANTS = ("plain", "matryoshka")


def variant_overrides(variant: str, dims: Sequence[int], weights: Sequence[float] | None) -> list[str]:
    """The stage-3 overrides of a variant (``plain`` trains the full width only)."""
    if variant == "plain":
        return []
    sets = [f"contrastive.matryoshka.dims={list(dims)}"]
    if weights is not None:
        sets.append(f"contrastive.matryoshka.weights={list(weights)}")
    return sets


def train_variant(folder: Path, base: Path, data: Path, seed: int, sets: list[str]) -> Path:
    """Stage 3 into ``folder`` unless already trained there; returns its model folder."""
    if not (folder / "result.json").is_file():
        recipe = load_recipe(builtin("tiny/contrastive"), [f"model.path={base}", f"data.root={data}",
                                                          f"train.output_dir={folder}", f"train.seed={seed}", *sets])
        train_stage(recipe, resume=(folder / "checkpoints").is_dir())
    return folder / "model"


def markdown(scores: dict[str, dict[int, dict[str, float | None]]], command: str) -> str:
    """Overall Precision@1 per width, plain truncation against Matryoshka training."""
    lines = [f"`{command}`", "", "| width | plain (truncated) | Matryoshka | delta |", "|---|---|---|---|"]
    for width in scores["matryoshka"]:
        plain, matryoshka = scores["plain"][width]["overall"], scores["matryoshka"][width]["overall"]
        delta = "-" if plain is None or matryoshka is None else f"{matryoshka - plain:+.2f}"
        lines.append(f"| {width} | {_score(plain)} | {_score(matryoshka)} | {delta} |")
    return "\n".join(lines) + "\n"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(data: Path, base: Path, out: Path, dims: Sequence[int], weights: Sequence[float] | None, seed: int,
        sets: list[str], datasets: list[str] | None, batch_size: int,
        command: str) -> dict[str, dict[int, dict[str, float | None]]]:
    """Train and evaluate both variants; returns ``{variant: {width: group scores}}`` and writes the reports."""
    scores = {}
    for variant in VARIANTS:
        model = train_variant(out / variant, base, data, seed, [*sets, *variant_overrides(variant, dims, weights)])
        summaries = evaluate_dims(BatchEncoder.from_pretrained(model), dims, data, out / variant / "eval", datasets,
                                    batch_size=batch_size)
        scores[variant] = dims_scores(summaries)
    (out / "matryoshka.json").write_text(json.dumps({"command": command, "dims": list(dims), "seed": seed,
                                                     "scores": scores}, indent=2))
    (out / "matryoshka.md").write_text(markdown(scores, command))
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="MiniMMEB folder (train and eval; with --smoke a tiny one)")
    parser.add_argument("--base", type=Path, help="model stage 3 starts from (stage 2's; with --smoke a tiny one)")
    parser.add_argument("--out", type=Path, help="with --smoke a temporary folder by default")
    parser.add_argument("--dims", type=int, nargs="+",
                        help="dims to train and evaluate, ascending, the last at most the hidden size "
                             "(48 96 with --smoke)")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one loss weight per width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="sets", nargs="*", default=[], help="stage-3 recipe overrides: key=value")
    parser.add_argument("--datasets", nargs="+", default=None, help="eval datasets (default: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.smoke:
        args.out = smoke_folder(args.out, "matryoshka")
        args.data = args.data or smoke_data(args.out / "data")
        args.base = args.base or smoke_model(args.out / "base")
        args.dims, args.datasets = args.dims or [48, 96], args.datasets or SMOKE_DATASETS[:2]
        args.sets = [*smoke_sets("contrastive"), *args.sets]
    elif None in (args.data, args.base, args.out, args.dims):
        parser.error("--data, --base, --out and --dims are required without --smoke")
    run(args.data, args.base, args.out, args.dims, args.weights, args.seed, args.sets, args.datasets,
        args.batch_size, command_line(__file__, argv))
    print((args.out / "matryoshka.md").read_text())


if __name__ == "__main__":
    main()
