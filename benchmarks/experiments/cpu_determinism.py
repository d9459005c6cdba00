"""Does a CPU training run depend on which kernels the machine picks? (issue 14)

Trains the same short stage several times, each in a fresh process under different settings
of the CPU math libraries' dispatch, and prints the final loss and a hash of the trained
weights. On one machine, the same settings give the same hash; settings that make MKL, oneDNN
or ATen take other code paths (as another CPU would) change it. With all three pinned to AVX2
(the last settings below), the code paths are those of the pins rather than of the CPU, for
any x86 CPU with AVX2 and the same thread count.

    python benchmarks/experiments/cpu_determinism.py --data runs/mini/data --steps 40
    python benchmarks/experiments/cpu_determinism.py --smoke

``--smoke`` trains one step of four rows under the default settings only, on a tiny MiniMMEB (built
in a temporary folder unless ``--data`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import smoke_data, smoke_folder, smoke_sets

#: Settings to compare: name -> environment variables added to the run's environment.
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "default (again)": {},
    "ATen kernels AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL code path AVX2": {"MKL_CBWR": "AVX2"},
    "oneDNN ISA AVX2": {"DNNL_MAX_CPU_ISA": "AVX2"},
    "all pinned to AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"},
    "all pinned to AVX2 (again)": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"},
}

_CHILD = """
import hashlib, json, sys, time
from pathlib import Path
from safetensors.torch import load_file
import torch
from cocoa.recipe import builtin, load_recipe
from cocoa.pipeline.train_stage import train_stage

data, out, steps, stage, extra = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
sets = [*extra, f"data.root={data}", f"train.output_dir={out}", f"train.max_steps={steps}", "train.epochs=null"]
began = time.perf_counter()
train_stage(load_recipe(builtin(f"tiny/{stage}"), sets))
seconds = time.perf_counter() - began
weights = load_file(str(out / "model" / "model.safetensors"))
digest = hashlib.sha256()
for name in sorted(weights):
    digest.update(name.encode() + weights[name].float().numpy().tobytes())
result = json.loads((out / "result.json").read_text())
print(json.dumps({"loss": result["last"]["loss"], "sha256": digest.hexdigest()[:16], "seconds": seconds,
                  "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def run_one(env_extra: dict[str, str], data: Path, steps: int, stage: str, sets: Sequence[str] = ()) -> dict:
    """Train in a fresh process with ``env_extra`` added to its environment (and recipe overrides ``sets``)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **env_extra}
        done = subprocess.run([sys.executable, "-c", _CHILD, str(data), str(Path(tmp) / "run"), str(steps), stage,
                               *sets], env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="MiniMMEB folder (default: runs/mini/data; with --smoke a tiny one)")
    parser.add_argument("--steps", type=int, help="default: 40; 1 with --smoke")
    parser.add_argument("--stage", default="pretrain", choices=["pretrain", "warmup", "bridge", "contrastive"])
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.smoke:
        args.data = args.data or smoke_data(smoke_folder(None, "cpu-determinism") / "data")
    args.data, args.steps = args.data or Path("runs/mini/data"), args.steps or (1 if args.smoke else 40)
    settings = {"default": {}} if args.smoke else SETTINGS
    sets = smoke_sets(args.stage) if args.smoke else []
    began = time.perf_counter()
    rows = []
    print(f"stage {args.stage}, {args.steps} steps, threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print("| setting | ATen kernels | seconds | final loss | weights sha256 |\n|---|---|---|---|---|")
    for name, env in settings.items():
        row = {"setting": name, "env": env, **run_one(env, args.data, args.steps, args.stage, sets)}
        rows.append(row)
        print(f"| {name} | {row['capability']} | {row['seconds']:.1f} | {row['loss']:.10f} | {row['sha256']} |",
              flush=True)
    print(f"wall {time.perf_counter() - began:.0f} s; same hash = bit-identical weights")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
