"""Ablation on MiniMMEB: what each CoCoA stage contributes, at an equal stage-3 budget.

Variants (those of one seed start from the same stage-0 model, standing in for a pretrained MLLM):
  a  causal + last-token contrastive only (VLM2Vec-style)
  b  bidirectional contrastive only
  c  stage 2 (EOS bridge) + stage 3
  d  stages 1 + 2 + 3 (CoCoA)
  e  CoCoA with the EOS seeing only the query in stage 2

Each seed trains its own stage-0 model (seed s initialises it and orders its batches), unless
--base names one for all seeds. Every stage is skipped when already trained, so a rerun resumes.
Writes per-run summaries under --out, then ``ablation.json``, ``ablation.md`` and ``ablation.png``:
mean, sample standard deviation and a 95% Student-t interval over seeds, per meta-task and
overall, for every variant and for its paired difference to the first variant. ``--smoke`` runs
variants a and c of one seed on a tiny MiniMMEB (built unless ``--data`` is given), each stage one
step of four rows, evaluated on five small sets: seconds long.

    python benchmarks/experiments/ablation.py --data runs/mini/data --out runs/ablation --seeds 0 1 2
    python benchmarks/experiments/ablation.py --smoke
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scipy import stats

from cocoa.evaluate.registry import modality
from cocoa.pipeline.driver import EvalSection, evaluate_model
from cocoa.pipeline.train_stage import train_stage
from cocoa.recipe import builtin, load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import SMOKE_DATASETS, command_line, finished, smoke_data, smoke_folder, smoke_sets
from video_order import order_counts

VARIANTS: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {
    "a": ("causal contrastive only (VLM2Vec-style)", [("contrastive", ["contrastive.attention=causal"])]),
    "b": ("bidirectional contrastive only", [("contrastive", [])]),
    "c": ("stage 2 + 3", [("bridge", []), ("contrastive", [])]),
    "d": ("stages 1 + 2 + 3 (CoCoA)", [("warmup", []), ("bridge", []), ("contrastive", [])]),
    "e": ("CoCoA, EOS sees only the query in stage 2",
          [("warmup", []), ("bridge", ["bridge.eos_sees_target=false"]), ("contrastive", [])]),
}
#: Image meta-tasks, then the image and video means (video: every video set of MiniMMEB v3; ``nan`` before it).
GROUPS = ("classification", "vqa", "retrieval", "grounding", "image", "video", "IND", "OOD", "overall")


def train_once(stage: str, folder: Path, model: Path | None, data: Path, seed: int, extra: list[str]) -> Path:
    """Train one stage into ``folder`` unless that recipe is finished there; returns its model folder."""
    sets = [f"data.root={data}", f"train.output_dir={folder}", f"train.seed={seed}", *extra]
    if model is not None:
        sets.append(f"model.path={model}")
    recipe = load_recipe(builtin(f"tiny/{stage}"), sets)
    if not finished(folder, recipe):
        train_stage(recipe, resume=(folder / "checkpoints").is_dir())
    return folder / "model"


def run_variant(key: str, seed: int, base: Path, data: Path, out: Path, common: dict[str, list[str]],
                datasets: list[str] | None = None) -> dict:
    """Train (sharing identical prefixes between variants) and evaluate one variant (on ``datasets``, default all)."""
    model, prefix = base, []
    for stage, extra in VARIANTS[key][1]:
        prefix.append(f"{stage}{'-' + '-'.join(x.split('.')[-1] for x in extra) if extra else ''}")
        folder = out / f"seed{seed}" / "+".join(prefix)
        model = train_once(stage, folder, model, data, seed, [*common.get(stage, []), *extra])
    summary = evaluate_model(model, EvalSection(batch_size=64, datasets=datasets), data,
                             out / f"seed{seed}" / f"eval-{key}")
    return summary


def group_scores(summary: dict) -> dict[str, float]:
    """Precision@1 per meta-task, split, modality and overall; ``nan`` where no set of the group was scored."""
    modalities = summary.get("modalities") or {"image": summary["overall"]}
    groups = {**summary["meta_tasks"], **summary["splits"], "overall": summary["overall"],
              "image": modalities["image"], "video": modalities.get("video", {"score": None})}
    return {name: float("nan") if g["score"] is None else g["score"] for name, g in groups.items()}


def seed_details(summary: dict, eval_dir: Path) -> dict:
    """One run's video sets (Precision@1) and its frame-order counts (rows, gold, reverse; ``video_order.py``)."""
    sets = {name: d["score"] for name, d in summary["datasets"].items()
            if modality(d["meta_task"]) == "video" and d["score"] is not None}
    return {"video_sets": sets, "order": {name: list(c) for name, c in order_counts(eval_dir).items()}}


Stat = tuple[float, float, float]  # mean, sample standard deviation, half-width of the 95% interval


def describe(values: list[float]) -> Stat:
    """Mean, sample standard deviation and the half-width of the 95% Student-t interval of the mean."""
    if len(values) < 2:
        return statistics.mean(values), 0.0, float("nan")
    spread = statistics.stdev(values)
    return statistics.mean(values), spread, float(stats.t.ppf(0.975, len(values) - 1)) * spread / len(values) ** 0.5


def aggregate(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Stat]]:
    return {key: {group: describe([r[group] for r in runs]) for group in GROUPS} for key, runs in results.items()}


def paired(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Stat]]:
    """Each later variant minus the first, seed by seed (they share the stage-0 model and the seed)."""
    first, *others = results
    return aggregate({key: [{g: run[g] - ref[g] for g in GROUPS} for run, ref in zip(results[key], results[first],
                                                                                     strict=True)]
                      for key in others})


def table_lines(table: dict[str, dict[str, Stat]], label: str, sign: str = "") -> list[str]:
    lines = ["| " + label + " | " + " | ".join(GROUPS) + " |", "|" + "---|" * (len(GROUPS) + 1)]
    for key, row in table.items():
        cells = " | ".join(f"{m:{sign}.1f} ± {s:.1f}" for m, s, _ in (row[g] for g in GROUPS))
        lines.append(f"| ({key}) {VARIANTS[key][0]} | {cells} |")
    return lines


def interval_lines(table: dict[str, dict[str, Stat]], label: str) -> list[str]:
    lines = ["| " + label + " | " + " | ".join(GROUPS) + " |", "|" + "---|" * (len(GROUPS) + 1)]
    for key, row in table.items():
        cells = " | ".join(f"[{m - h:+.1f}, {m + h:+.1f}]" if math.isfinite(h) else "n/a (one seed)"
                           for m, _, h in (row[g] for g in GROUPS))
        lines.append(f"| ({key}) {VARIANTS[key][0]} | {cells} |")
    return lines


def markdown(results: dict[str, list[dict[str, float]]], details: dict[str, list[dict]], seeds: list[int],
             wall: float, command: str) -> str:
    lines = [f"Command: `{command}`", "", f"Seeds: {seeds}; wall time {wall / 60:.1f} min "
             "(this run; finished stages are reused on a rerun).", "",
             *table_lines(aggregate(results), "variant"),
             "", "Mean ± sample standard deviation over seeds of Precision@1 (%)."]
    if len(results) > 1:
        first = next(iter(results))
        differences = paired(results)
        lines += ["", *table_lines(differences, f"minus ({first}), same seed", "+"), "",
                  f"Mean ± sample standard deviation over seeds of the difference to ({first}) on the same seed.",
                  "", *interval_lines(differences, f"minus ({first}), 95% interval"), "",
                  f"95% Student-t interval of the mean paired difference to ({first}) over {len(seeds)} seeds."]
    return "\n".join(lines + per_seed_lines(results, details, seeds)) + "\n"


def per_seed_lines(results: dict[str, list[dict[str, float]]], details: dict[str, list[dict]],
                   seeds: list[int]) -> list[str]:
    """Every run: overall, image, video, each video set, and its top-1 gold / reverse counts summed over
    the order sets of ``video_order.py``; then each video set's mean and paired difference over seeds."""
    sets = sorted({name for runs in details.values() for run in runs for name in run["video_sets"]})
    head = ["overall", "image", "video", *sets]
    lines = ["", "| variant | seed | " + " | ".join(head) + " | gold / reverse |", "|" + "---|" * (len(head) + 3)]
    for key, runs in results.items():
        for seed, run, detail in zip(seeds, runs, details[key], strict=True):
            scores = {**run, **detail["video_sets"]}
            order = detail["order"].values()
            lines.append(f"| ({key}) | {seed} | " + " | ".join(f"{scores.get(h, math.nan):.2f}" for h in head)
                         + f" | {sum(c[1] for c in order)} / {sum(c[2] for c in order)} |")
    if not sets:
        return lines
    by_set = {key: [run["video_sets"] for run in runs] for key, runs in details.items()}
    lines += ["", "Per video set, over seeds (mean ± sample standard deviation; differences paired by seed):", "",
              "| | " + " | ".join(sets) + " |", "|" + "---|" * (len(sets) + 1)]
    first = next(iter(by_set))
    for key, runs in by_set.items():
        lines.append(f"| ({key}) | " + " | ".join("{:.1f} ± {:.1f}".format(*describe([r[n] for r in runs])[:2])
                                                 for n in sets) + " |")
        if key != first:
            cells = []
            for n in sets:
                mean, _, half = describe([r[n] - ref[n] for r, ref in zip(runs, by_set[first], strict=True)])
                cells.append(f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}]" if math.isfinite(half)
                             else f"{mean:+.1f}")
            lines.append(f"| ({key}) minus ({first}), 95% interval | " + " | ".join(cells) + " |")
    return lines


def plot(table: dict[str, dict[str, Stat]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(table)
    for i, (key, row) in enumerate(table.items()):
        xs = [j + i * width for j in range(len(GROUPS))]
        ax.bar(xs, [row[g][0] for g in GROUPS], width, yerr=[row[g][1] for g in GROUPS], label=f"({key})", capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(GROUPS))], GROUPS)
    ax.set_ylabel("Precision@1 (%)")
    ax.set_title("MiniMMEB ablation (mean ± std over seeds)")
    ax.legend(ncol=len(table), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="MiniMMEB folder (default: runs/mini/data; with --smoke a tiny one)")
    parser.add_argument("--out", type=Path, help="default: runs/ablation; with --smoke a temporary folder")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2; 0 with --smoke")
    parser.add_argument("--variants", nargs="+", help="default: all; a c with --smoke")
    parser.add_argument("--datasets", nargs="+", help="eval sets (default: all; five small ones with --smoke)")
    parser.add_argument("--base", type=Path, default=None,
                        help="one stage-0 model for every seed (default: train one per seed)")
    parser.add_argument("--set", dest="sets", nargs="*", default=[],
                        help="STAGE:key=value overrides, e.g. contrastive:train.max_steps=100")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.smoke:
        args.out = smoke_folder(args.out, "ablation")
        args.data = args.data or smoke_data(args.out / "data")
    args.out, args.data = args.out or Path("runs/ablation"), args.data or Path("runs/mini/data")
    args.seeds = args.seeds or ([0] if args.smoke else [0, 1, 2])
    args.variants = args.variants or (["a", "c"] if args.smoke else list(VARIANTS))
    args.datasets = args.datasets or (SMOKE_DATASETS if args.smoke else None)
    stages = ("pretrain", "warmup", "bridge", "contrastive")
    common: dict[str, list[str]] = {stage: smoke_sets(stage) for stage in stages} if args.smoke else {}
    for item in args.sets:
        stage, override = item.split(":", 1)
        common.setdefault(stage, []).append(override)
    began = time.perf_counter()
    results: dict[str, list[dict[str, float]]] = {key: [] for key in args.variants}
    details: dict[str, list[dict]] = {key: [] for key in args.variants}
    for seed in args.seeds:
        base = args.base or train_once("pretrain", args.out / f"seed{seed}" / "pretrain", None, args.data, seed,
                                       common.get("pretrain", []))
        for key in args.variants:
            summary = run_variant(key, seed, base, args.data, args.out, common, args.datasets)
            results[key].append(group_scores(summary))
            details[key].append(seed_details(summary, args.out / f"seed{seed}" / f"eval-{key}"))
            print(f"seed {seed} ({key}): overall {results[key][-1]['overall']:.2f}", flush=True)
        write_outputs(args.out, results, details, args.seeds[:args.seeds.index(seed) + 1], time.perf_counter() - began,
                      command_line(__file__, argv))
    print((args.out / "ablation.md").read_text())


def write_outputs(out: Path, results: dict[str, list[dict[str, float]]], details: dict[str, list[dict]],
                  seeds: list[int], wall: float, command: str) -> None:
    """Aggregate the seeds finished so far (rewritten after every seed)."""
    table = aggregate(results)
    (out / "ablation.json").write_text(json.dumps({"seeds": seeds, "runs": results, "details": details,
                                                   "wall_seconds": wall, "command": command}, indent=2))
    (out / "ablation.md").write_text(markdown(results, details, seeds, wall, command))
    plot(table, out / "ablation.png")


if __name__ == "__main__":
    main()
