"""Random batches against B3 batches (and B3 batches with one mined negative) for stage 3 on MiniMMEB.

Every run trains the tiny stage-3 recipe from one stage-2 model (``--base``, the make-run
``runs/mini/2-bridge/model``), which is also the teacher that mines. Variants, paired by seed:

  random  a fresh permutation an epoch (the recipe as ``make run`` trains it), MiniMMEB's own negatives
  b3      batches of whole communities from ``cocoa mine`` (``data.batches``), MiniMMEB's own negatives
  b3neg   the same batches, each query with one negative mined from ranks [p, p + m)

per global batch size (``--batch-sizes``). Finished runs are reused on a rerun (each stage and each
evaluation resumes), so the grid can be run one seed at a time. Writes ``mining.json`` and
``mining.md`` under ``--out``: mean and 95% Student-t interval over seeds of each variant's paired
difference to ``random`` per modality, and the wall time of mining against stage 3's.

    python benchmarks/experiments/batch_mining.py --base runs/mini/2-bridge/model --seeds 0 1 2
    python benchmarks/experiments/batch_mining.py --smoke
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ablation import describe, group_scores

from cocoa.data.items import TrainPair
from cocoa.data.train_pairs import pairs_digest, read_train_pairs
from cocoa.inference.embedder import Embedder
from cocoa.mining.mine import EMBEDDINGS_FILE, MineSettings, mine
from cocoa.pipeline.driver import EvalSection, evaluate_model
from cocoa.pipeline.train_stage import train_stage
from cocoa.recipe import builtin, load_recipe
from cocoa.train.batches import BatchPlan, StepBatches
from cocoa.train.community_batches import NEGATIVES_DIR, CommunityBatches, CommunityPlan

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import SMOKE_DATASETS, command_line, finished, smoke_data, smoke_folder, smoke_model, smoke_sets

VARIANTS = ("random", "b3", "b3neg")
GROUPS = ("image", "video", "overall")


def shared_answers(pairs: Sequence[TrainPair], batches: StepBatches) -> float:
    """The share of the first epoch's rows whose target another row of its global batch shares: in-batch
    false negatives, unless ``contrastive.mask_same_targets`` leaves them out."""
    keys = [pair.positive.key() for pair in pairs]
    hit = total = 0
    for step in range(batches.steps_per_epoch):
        batch = batches.indices(step, 0)
        counts = Counter(keys[i] for i in batch)
        hit, total = hit + sum(counts[keys[i]] > 1 for i in batch), total + len(batch)
    return hit / total


def negatives_in_batch(pairs: Sequence[TrainPair], batches: StepBatches) -> float:
    """The share of the first epoch's rows whose first hard negative is the target of another row of its
    global batch: a false negative for that row, unless ``contrastive.mask_same_targets`` leaves it out."""
    hit = total = 0
    for step in range(batches.steps_per_epoch):
        batch = batches.indices(step, 0)
        owners: dict[tuple, set[int]] = {}
        for i in batch:
            owners.setdefault(pairs[i].positive.key(), set()).add(i)
        hit += sum(bool(pairs[i].negatives and owners.get(pairs[i].negatives[0].key(), set()) - {i}) for i in batch)
        total += len(batch)
    return hit / total


def mined(base: Path, data: Path, out: Path, settings: MineSettings, cap: int | None, seed: int) -> tuple[Path, float]:
    """The plan folder for ``settings`` (mined once; the teacher's vectors are shared between batch
    sizes) and the seconds mining took."""
    folder = out / f"plan-b{settings.batch_size}-seed{seed}"
    shared = out / EMBEDDINGS_FILE
    if shared.is_file() and not (folder / EMBEDDINGS_FILE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared, folder / EMBEDDINGS_FILE)
    began = time.perf_counter()
    pairs = read_train_pairs(data, None, data / "images", cap=cap, seed=seed)
    plan = mine(pairs, Embedder.from_pretrained(base), folder, settings)
    if not shared.is_file():
        shutil.copy(folder / EMBEDDINGS_FILE, shared)
    return folder, float(plan.manifest.get("seconds", time.perf_counter() - began))


def run(variant: str, batch: int, seed: int, base: Path, data: Path, plan: Path, out: Path,
        sets: list[str], datasets: list[str] | None) -> tuple[dict, float]:
    """Train (unless done) and evaluate one run; returns its summary and stage-3 seconds."""
    folder = out / f"b{batch}" / f"seed{seed}" / variant
    overrides = [f"model.path={base}", f"data.root={data}", f"train.output_dir={folder}", f"train.seed={seed}",
                 f"train.batch_size={batch}", *sets]
    if variant != "random":
        overrides.append(f"data.batches={plan}")
    if variant == "b3neg":
        overrides += [f"data.root={plan / NEGATIVES_DIR}", f"data.images={data / 'images'}",
                      "contrastive.hard_negatives=true"]
    recipe = load_recipe(builtin("tiny/contrastive"), overrides)
    if not finished(folder, recipe):
        train_stage(recipe, resume=(folder / "checkpoints").is_dir())
    seconds = json.loads((folder / "result.json").read_text())["wall_seconds"]
    summary = evaluate_model(folder / "model", EvalSection(batch_size=64, datasets=datasets), data, folder / "eval")
    return summary, seconds


def markdown(results: dict, command: str) -> str:
    lines = [f"Command: `{command}`", ""]
    for batch, by_variant in results["runs"].items():
        seeds = results["seeds"]
        lines += [f"Global batch {batch}, seeds {seeds}: Precision@1 per seed (image / video / overall)", ""]
        for variant, runs in by_variant.items():
            cells = "; ".join(f"{r['image']:.2f} / {r['video']:.2f} / {r['overall']:.2f}" for r in runs)
            lines.append(f"- {variant}: {cells}")
        lines.append("")
        if "random" not in by_variant:  # nothing to pair with
            continue
        lines += ["| minus random, same seed | " + " | ".join(GROUPS) + " |", "|---|" + "---|" * len(GROUPS)]
        for variant in [v for v in by_variant if v != "random"]:
            cells = []
            for g in GROUPS:
                diffs = [r[g] - ref[g] for r, ref in zip(by_variant[variant], by_variant["random"], strict=False)]
                mean, _, half = describe(diffs)
                cells.append(f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]" if half == half else f"{mean:+.2f}")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"Mining wall (per plan): {results['mining_seconds']}; stage 3 wall (per run): "
                 f"{results['stage_seconds']}.")
    lines.append(f"Rows whose target another row of the batch shares, first epoch: {results['shared_answers']}.")
    if results["negatives_in_batch"]:
        lines.append(f"B3 rows whose mined negative is another row's target, first epoch: "
                     f"{results['negatives_in_batch']}.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="stage-2 model (default: runs/mini/2-bridge/model)")
    parser.add_argument("--data", type=Path, help="MiniMMEB folder (default: runs/mini/data)")
    parser.add_argument("--out", type=Path, help="default: runs/batch-mining")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--p", type=int, default=10)
    parser.add_argument("--m", type=int, default=20)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--set", dest="sets", nargs="*", default=[], help="stage-3 recipe overrides")
    parser.add_argument("--smoke", action="store_true", help="a tiny MiniMMEB and model, one step a run")
    args = parser.parse_args(argv)
    datasets = None
    if args.smoke:
        args.out = smoke_folder(args.out, "batch-mining")
        args.data = args.data or smoke_data(args.out / "data")
        args.base = args.base or smoke_model(args.out / "base")
        args.sets = [*smoke_sets("contrastive"), *args.sets]
        args.batch_sizes, args.p, args.m, args.size, datasets = [4], 0, 2, 2, SMOKE_DATASETS
    args.base, args.data = args.base or Path("runs/mini/2-bridge/model"), args.data or Path("runs/mini/data")
    args.out = args.out or Path("runs/batch-mining")
    recipe = load_recipe(builtin("tiny/contrastive"), [f"data.root={args.data}", *args.sets])
    results: dict = {"seeds": [], "runs": {}, "mining_seconds": {}, "stage_seconds": {}, "shared_answers": {},
                     "negatives_in_batch": {}}
    for seed in args.seeds:
        for batch in args.batch_sizes:
            settings = MineSettings(p=args.p, m=args.m, size=args.size, batch_size=batch, seed=seed)
            plan, mining = mined(args.base, args.data, args.out, settings, recipe.data.cap, seed)
            results["mining_seconds"][f"b{batch}-seed{seed}"] = round(mining, 1)
            pairs = read_train_pairs(args.data, None, args.data / "images", cap=recipe.data.cap, seed=seed,
                                     check_images=False)
            results["shared_answers"][f"b{batch}-seed{seed}"] = {
                "random": round(shared_answers(pairs, BatchPlan(len(pairs), batch, 1, seed)), 4),
                "b3": round(shared_answers(pairs, CommunityBatches.checked(CommunityPlan.load(plan), pairs_digest(pairs),
                                                                           batch, 1, seed)), 4)}
            if "b3neg" in args.variants:
                with_negatives = read_train_pairs(plan / NEGATIVES_DIR, None, args.data / "images", cap=recipe.data.cap,
                                                  seed=seed, check_images=False)
                results["negatives_in_batch"][f"b{batch}-seed{seed}"] = round(negatives_in_batch(
                    with_negatives, CommunityBatches.checked(CommunityPlan.load(plan), pairs_digest(with_negatives),
                                                             batch, 1, seed)), 4)
            for variant in args.variants:
                summary, seconds = run(variant, batch, seed, args.base, args.data, plan, args.out, args.sets, datasets)
                results["runs"].setdefault(str(batch), {}).setdefault(variant, []).append(group_scores(summary))
                results["stage_seconds"][f"b{batch}-seed{seed}-{variant}"] = round(seconds, 1)
                print(f"batch {batch} seed {seed} {variant}: overall {group_scores(summary)['overall']:.2f}", flush=True)
        results["seeds"].append(seed)
        (args.out / "mining.json").write_text(json.dumps(results, indent=2))
        (args.out / "mining.md").write_text(markdown(results, command_line(__file__, argv)))
    print((args.out / "mining.md").read_text())


if __name__ == "__main__":
    main()
