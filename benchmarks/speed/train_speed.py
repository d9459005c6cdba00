"""Training throughput, peak memory and model-FLOPs utilisation per stage (not a test).

Each (preset, stage) runs in its own process on a MiniMMEB folder, so peak memory is that
stage's alone. MFU = achieved model FLOP/s / a measured fp32 matmul peak of this machine,
with model FLOPs = 6 x (decoder-layer parameters) x tokens per step (forward and backward;
embedding lookups, the LM head, attention scores and the vision tower are left out, so it
is a lower bound). Stage 3 re-runs every chunk for GradCache, which the count leaves out too.

    python benchmarks/speed/train_speed.py --data runs/mini/data --presets tiny small --steps 12
    python benchmarks/speed/train_speed.py --smoke

``--smoke`` times one step of four rows of stage 3 on the tiny preset and a tiny MiniMMEB (built in a
temporary folder unless ``--data`` is given), against a 256x256 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import smoke_data, smoke_folder, smoke_sets

STAGES = ("pretrain", "warmup", "bridge", "contrastive")


def matmul_peak(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 matmul FLOP/s of this machine with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - began)


def measure(preset: str, stage: str, data: Path, steps: int, threads: int, sets: Sequence[str] = ()) -> dict:
    """Run in a child process: time ``steps`` optimiser steps of one stage (its tiny recipe with ``sets``)."""
    from cocoa.core.batch import Batch
    from cocoa.core.distributed import setup
    from cocoa.pipeline.train_stage import build_backbone
    from cocoa.recipe import builtin, load_recipe
    from cocoa.stages import get_stage
    from cocoa.stages.contrastive import PairBatch
    from cocoa.train.batches import BatchPlan, StepDataset
    from cocoa.train.trainer import Trainer

    torch.set_num_threads(threads)
    info = setup()
    recipe = load_recipe(builtin(f"tiny/{stage}"), [*sets, f"data.root={data}", "model.path=null",
                                                    f"model.tiny={preset}", "train.output_dir=/tmp/cocoa-train-speed",
                                                    f"train.max_steps={steps + 2}", "train.epochs=null"])
    backbone = build_backbone(recipe)
    examples = get_stage(stage).examples(recipe)
    parts = get_stage(stage).parts(recipe, backbone, backbone.model)
    plan = BatchPlan(len(examples), recipe.train.batch_size, 1, 0)
    dataset = StepDataset(examples, parts.builder, plan)
    trainer = Trainer(parts.objective, dataset, parts.step, steps + 2, recipe.train, info,
                      Path("/tmp/cocoa-train-speed"))
    step = trainer.compute
    batches = [dataset[i] for i in range(steps + 1)]
    trainer.objective.train()
    step(batches[0])
    tokens = 0
    began = time.perf_counter()
    for batch in batches[1:]:
        trainer.optimizer.zero_grad(set_to_none=True)
        step(batch)
        trainer.optimizer.step()
        chunks = batch.chunks if isinstance(batch, PairBatch) else [batch]
        tokens += sum(int((c.roles != 0).sum()) for c in chunks if isinstance(c, Batch))
    seconds = time.perf_counter() - began
    text_params = sum(p.numel() for n, p in backbone.model.named_parameters() if ".layers." in n and "visual" not in n)
    rows = plan.batch_size * (3 if stage == "contrastive" else 1)
    return {"preset": preset, "stage": stage, "params": backbone.num_parameters(), "rows_per_step": rows,
            "samples_per_second": steps * plan.batch_size / seconds, "rows_per_second": steps * rows / seconds,
            "model_flops_per_second": 6 * text_params * tokens / seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="MiniMMEB folder (default: runs/mini/data; with --smoke a tiny one)")
    parser.add_argument("--presets", nargs="+", help="default: tiny small; tiny with --smoke")
    parser.add_argument("--stages", nargs="+", help="default: all; contrastive with --smoke")
    parser.add_argument("--steps", type=int, help="default: 12; 1 with --smoke")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("PRESET", "STAGE"), help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.smoke and not args.child:
        args.data = args.data or smoke_data(smoke_folder(None, "train-speed") / "data")
    args.data, args.steps = args.data or Path("runs/mini/data"), args.steps or (1 if args.smoke else 12)
    args.presets = args.presets or (["tiny"] if args.smoke else ["tiny", "small"])
    args.stages = args.stages or (["contrastive"] if args.smoke else list(STAGES))
    if args.child:
        sets = smoke_sets(args.child[1]) if args.smoke else []
        print(json.dumps(measure(args.child[0], args.child[1], args.data, args.steps, args.threads, sets)))
        return
    peak = matmul_peak(args.threads, 256 if args.smoke else 2048)
    print(f"torch {torch.__version__}, {args.threads} threads, fp32; measured matmul peak {peak / 1e9:.1f} GFLOP/s; "
          f"{args.steps} timed steps per stage (batch from the tiny recipes{', cut to 4 rows' * args.smoke})")
    print("| preset | stage | params | samples/s | rows/s | peak RSS MiB | model GFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for stage in args.stages:
            out = subprocess.run([sys.executable, __file__, "--data", str(args.data), "--steps", str(args.steps),
                                  "--threads", str(args.threads), "--child", preset, stage,
                                  *["--smoke"] * args.smoke], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {preset} | {stage} | {r['params'] / 1e6:.2f}M | {r['samples_per_second']:.1f} | "
                  f"{r['rows_per_second']:.1f} | {r['peak_rss_mib']:.0f} | {r['model_flops_per_second'] / 1e9:.2f} | "
                  f"{r['model_flops_per_second'] / peak:.1%} |", flush=True)


if __name__ == "__main__":
    main()
