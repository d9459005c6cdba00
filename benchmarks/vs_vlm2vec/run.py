"""Training and evaluation speed of cocoa and VLM2Vec v1, side by side, on the same model and data.

Runs VLM2Vec's own ``train.py`` and ``eval.py`` (its source and venv from ``setup.sh``, patched by
``vlm2vec-cpu.patch``) and cocoa's ``cocoa train`` (stage 3 recipe) and ``cocoa eval``, on one tiny
Qwen2-VL folder and Fashion-MNIST in MMEB format (``build.py``), with the same settings: batch 32,
GradCache chunk 8 on both sides, max_len 128, temperature 0.02, causal attention and last-token
pooling, no hard negatives, one epoch, the same dtype. Both trainers run under
``torchrun --nproc_per_node 1``, as VLM2Vec's scripts do (its GradCache step requires DDP). The two
systems alternate within every round, in an order that flips each round, so that a drift in the
machine's speed hits both alike. Prints, per round and as medians: training samples/s (each
trainer's own figure over its training loop), process wall and peak RSS of training and of
evaluation, the eval accuracy, and the ratios cocoa / VLM2Vec. Not a test.

    benchmarks/vs_vlm2vec/setup.sh
    python benchmarks/vs_vlm2vec/run.py --rounds 3
    python benchmarks/vs_vlm2vec/run.py --smoke [--work DIR]

``--smoke`` is one round on the tiny preset, 32 training rows (one step) and 8 eval queries; where
VLM2Vec is not set up under ``--work`` it runs cocoa's side alone and prints no ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from build import SUBSET, build

REPO = Path(__file__).resolve().parents[2]
TRAIN_SAMPLES = re.compile(r"'train_samples_per_second': ([0-9.]+)")


@dataclass
class Run:
    """One process: its wall time, peak resident memory, and what it reported."""

    system: str
    what: str
    round: int
    wall_s: float
    peak_rss_mb: float
    samples_per_s: float | None = None
    accuracy: float | None = None


def timed(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run ``cmd`` with output to ``log``; its wall seconds and peak RSS (MiB, the process tree)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed with exit code {proc.returncode}; see {log}")
    return wall, usage.ru_maxrss / 1024


def vlm2vec_ready(work: Path) -> bool:
    """Whether setup.sh has built VLM2Vec's source and venv under ``work``."""
    return (work / "VLM2Vec" / "train.py").is_file() and (work / "venv" / "bin" / "python").is_file()


class VLM2Vec:
    """VLM2Vec v1's train.py and eval.py from the source and venv that setup.sh built."""

    name = "vlm2vec"

    def __init__(self, work: Path, dtype: str, port: int, resolution: str = "original", max_len: int = 128,
                 seed: int = 0) -> None:
        self.src, self.venv, self.dtype, self.port = work / "VLM2Vec", work / "venv", dtype, port
        self.resolution, self.max_len, self.seed = resolution, max_len, seed
        if not vlm2vec_ready(work):
            raise SystemExit(f"VLM2Vec is not set up under {work}: run benchmarks/vs_vlm2vec/setup.sh {work}")
        self.env = {**os.environ, "VLM2VEC_ATTN": "sdpa", "PYTHONPATH": str(self.src),
                    "VLM2VEC_DTYPE": "bfloat16" if dtype == "bf16" else "float32",
                    "WANDB_MODE": "disabled"}

    def common(self, data: Path) -> list[str]:
        return ["--image_dir", str(data / "images"), "--image_resolution", self.resolution, "--max_len", str(self.max_len),
                "--pooling", "last", "--normalize", "True", "--subset_name", SUBSET,
                "--dataloader_num_workers", "0", "--report_to", "none"]

    def train(self, model: Path, data: Path, out: Path, rows: int, lr: float, r: int) -> Run:
        cmd = [str(self.venv / "bin" / "torchrun"), "--nproc_per_node", "1", "--master_port", str(self.port),
               "train.py", "--model_name", str(model), "--output_dir", str(out),
               "--dataset_name", str(data / "train"), "--split_name", "original",
               "--num_sample_per_subset", str(rows), "--temperature", "0.02",
               "--per_device_train_batch_size", "32", "--grad_cache", "True",
               "--gc_q_chunk_size", "8", "--gc_p_chunk_size", "8", "--learning_rate", str(lr),
               "--num_train_epochs", "1", "--lr_scheduler_type", "linear", "--warmup_steps", "0",
               "--save_strategy", "no", "--logging_steps", "10", "--remove_unused_columns", "False",
               "--seed", str(self.seed), *(["--bf16"] if self.dtype == "bf16" else []), *self.common(data)]
        log = out.with_suffix(".log")
        wall, rss = timed(cmd, log, self.cache_env(out), self.src)
        found = TRAIN_SAMPLES.findall(log.read_text())
        if not found:
            raise SystemExit(f"no train_samples_per_second in {log}")
        return Run(self.name, "train", r, wall, rss, samples_per_s=float(found[-1]))

    def evaluate(self, model: Path, data: Path, out: Path, r: int) -> Run:
        cmd = [str(self.venv / "bin" / "python"), "eval.py", "--model_name", str(model),
               "--encode_output_path", str(out), "--dataset_name", str(data / "eval"),
               "--dataset_split", "test", "--per_device_eval_batch_size", "32", "--output_dir", str(out),
               *self.common(data)]
        wall, rss = timed(cmd, out.with_suffix(".log"), self.cache_env(out), self.src)
        score = json.loads((out / f"{SUBSET}_score.json").read_text())
        return Run(self.name, "eval", r, wall, rss, accuracy=100 * score["acc"])

    def cache_env(self, out: Path) -> dict[str, str]:
        """A datasets cache of the run's own: datasets keys a local folder's cache by its name and
        data-file patterns, so two data folders both called ``train`` would share one."""
        return {**self.env, "HF_DATASETS_CACHE": str(out.with_suffix(".hf-cache"))}


class Cocoa:
    """cocoa's stage-3 trainer (``cocoa train``) and evaluator (``cocoa eval``) from this checkout's venv."""

    name = "cocoa"

    def __init__(self, dtype: str, port: int, workers: int, dedupe: bool, protocol: str | None = None,
                 seed: int = 0) -> None:
        self.bin, self.dtype, self.port, self.workers = REPO / ".venv" / "bin", dtype, port, workers
        self.dedupe, self.protocol, self.seed = dedupe, protocol, seed
        self.env = dict(os.environ)

    def train(self, model: Path, data: Path, out: Path, rows: int, lr: float, r: int) -> Run:
        recipe = {
            "stage": "contrastive",
            "model": {"path": str(model), "attn_implementation": "sdpa"},
            "data": {"root": str(data / "train"), "images": str(data / "images"), "subsets": [SUBSET],
                     "split": "original", "cap": rows, "max_len": 128, "num_workers": self.workers},
            "train": {"output_dir": str(out), "batch_size": 32, "epochs": 1, "lr": lr, "warmup_steps": 0,
                      "schedule": "linear", "grad_clip": 1.0, "precision": self.dtype, "seed": self.seed,
                      "log_every": 10, "save_every": 100_000},
            "contrastive": {"temperature": 0.02, "attention": "causal", "hard_negatives": False,
                            "gradcache_chunk": 8, "dedupe": self.dedupe},
        }
        if self.protocol is not None:  # images as they are, like VLM2Vec's --image_resolution original
            recipe["protocol"] = {"preset": self.protocol, "image": {}}
        path = out.with_suffix(".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe))
        cmd = [str(self.bin / "torchrun"), "--nproc_per_node", "1", "--master_port", str(self.port),
               "-m", "cocoa.cli", "train", str(path)]
        wall, rss = timed(cmd, out.with_suffix(".log"), self.env, REPO)
        result = json.loads((out / "result.json").read_text())
        return Run(self.name, "train", r, wall, rss, samples_per_s=result["samples_per_second"])

    def evaluate(self, model: Path, data: Path, out: Path, r: int) -> Run:
        cmd = [str(self.bin / "cocoa"), "eval", "--model", str(model), "--data", str(data / "eval"),
               "--images", str(data / "images"), "--out", str(out), "--batch-size", "32"]
        wall, rss = timed(cmd, out.with_suffix(".log"), self.env, REPO)
        score = json.loads((out / f"{SUBSET}_score.json").read_text())
        return Run(self.name, "eval", r, wall, rss, accuracy=score["precision_at_1"])


def trained_model(system: VLM2Vec | Cocoa, out: Path) -> Path:
    return out / "model" if isinstance(system, Cocoa) else out


def summary(runs: list[Run]) -> str:
    """Per-round figures and, where both systems ran, medians with the ratios cocoa / VLM2Vec."""
    lines = [f"{'round':>5} {'system':>8} {'what':>5} {'samples/s':>9} {'wall s':>7} {'peak RSS MiB':>12} {'P@1':>5}"]
    for run in runs:
        sps = f"{run.samples_per_s:.1f}" if run.samples_per_s is not None else "-"
        acc = f"{run.accuracy:.1f}" if run.accuracy is not None else "-"
        lines.append(f"{run.round:>5} {run.system:>8} {run.what:>5} {sps:>9} {run.wall_s:>7.1f} "
                     f"{run.peak_rss_mb:>12.0f} {acc:>5}")
    if {run.system for run in runs} != {"cocoa", "vlm2vec"}:
        return "\n".join(lines)

    def median(system: str, what: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs if r.system == system and r.what == what)

    lines.append("medians over rounds, cocoa / VLM2Vec:")
    for what, field, label in (("train", "samples_per_s", "training samples/s"), ("train", "wall_s", "training wall"),
                               ("train", "peak_rss_mb", "training peak RSS"), ("eval", "wall_s", "eval wall"),
                               ("eval", "peak_rss_mb", "eval peak RSS")):
        c, v = median("cocoa", what, field), median("vlm2vec", what, field)
        lines.append(f"  {label:<20} cocoa {c:8.1f}  VLM2Vec {v:8.1f}  ratio {c / v:.2f}x")
    per_round = [c.samples_per_s / v.samples_per_s for c in runs for v in runs
                 if c.what == v.what == "train" and c.round == v.round and c.system == "cocoa" and v.system == "vlm2vec"]
    lines.append("  training samples/s ratio per round: " + ", ".join(f"{x:.2f}x" for x in per_round))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "vs_vlm2vec",
                        help="setup.sh's folder (VLM2Vec/, venv/); the runs go under it too")
    parser.add_argument("--rounds", type=int, help="default: 3; 1 with --smoke")
    parser.add_argument("--preset", help="cocoa tiny preset of the shared model (default: small; tiny with --smoke)")
    parser.add_argument("--vocab", type=int, default=0,
                        help="embedding rows of the shared model (0: the tokenizer's size)")
    parser.add_argument("--train-rows", type=int, help="default: 2048; 32 with --smoke")
    parser.add_argument("--eval-rows", type=int, help="default: 2000; 8 with --smoke")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--port", type=int, default=29631, help="torchrun master port")
    parser.add_argument("--cocoa-workers", type=int, default=0,
                        help="cocoa's data.num_workers: batches built in that many processes beside training "
                             "(VLM2Vec's GradCache trainer runs its processor inside the training step)")
    parser.add_argument("--cocoa-protocol", help="the protocol cocoa trains and evaluates with, images unsquashed "
                                                  "(vlm2vec-v1: VLM2Vec's own; default: cocoa's, causal)")
    parser.add_argument("--seed", type=int, default=0, help="both trainers' seed")
    parser.add_argument("--cocoa-dedupe", action="store_true",
                        help="cocoa's contrastive.dedupe: each distinct row of a batch embedded once (here the "
                             "label texts: about 10 distinct targets in a batch of 32)")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.smoke else 3)
    args.preset = args.preset or ("tiny" if args.smoke else "small")
    args.train_rows = args.train_rows or (32 if args.smoke else 2048)
    args.eval_rows = args.eval_rows or (8 if args.smoke else 2000)
    work = args.work.resolve()
    model, data = build(work, args.preset, args.vocab, args.train_rows, args.eval_rows)
    systems: list[VLM2Vec | Cocoa] = [
        Cocoa(args.dtype, args.port, args.cocoa_workers, args.cocoa_dedupe, args.cocoa_protocol, args.seed)]
    if args.smoke and not vlm2vec_ready(work):
        print(f"VLM2Vec is not set up under {work}: cocoa's side only")
    else:
        systems.insert(0, VLM2Vec(work, args.dtype, args.port, seed=args.seed))
    tag = (f"{args.preset}-vocab{args.vocab or 'tok'}-{args.dtype}-w{args.cocoa_workers}"
           + ("-dedupe" if args.cocoa_dedupe else "") + (f"-{args.cocoa_protocol}" if args.cocoa_protocol else "")
           + f"-seed{args.seed}" + ("-smoke" if args.smoke else ""))
    out = work / "runs" / tag
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"model {model}, data {data}, {args.train_rows} training rows, {args.eval_rows} eval queries, {args.dtype}")
    runs: list[Run] = []
    for r in range(args.rounds):
        for system in systems if r % 2 == 0 else systems[::-1]:
            folder = out / f"{system.name}-r{r}"
            runs.append(system.train(model, data, folder / "train", args.train_rows, args.lr, r))
            runs.append(system.evaluate(trained_model(system, folder / "train"), data, folder / "eval", r))
            print(f"round {r} {system.name}: " + "; ".join(
                f"{x.what} {x.wall_s:.1f} s" for x in runs[-2:]), flush=True)
    text = summary(runs)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    (out / "runs.json").write_text(json.dumps([asdict(x) for x in runs], indent=2))


if __name__ == "__main__":
    main()
