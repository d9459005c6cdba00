"""Forward and forward+backward time per batch for each attention mode (not a test).

Every mode runs on the same token layout, ``[image + query text] <EOS> [target text]``,
so only the mask differs; the target is ``eos_bridge`` at most 1.15x ``bidirectional``.

    python benchmarks/speed/attention_speed.py --presets tiny small --batch 8 --repeats 20
    python benchmarks/speed/attention_speed.py --smoke     # the tiny preset, batch 2, one repeat
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch

from cocoa.core.batch import Batch
from cocoa.model.attention import ATTENTION_MODES
from cocoa.model.backbone import Backbone
from cocoa.model.forward import hidden_states

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import bridged_batch, timed


def forward(model: torch.nn.Module, batch: Batch, mode: str) -> None:
    with torch.no_grad():
        hidden_states(model, batch, mode)  # type: ignore[arg-type]


def train_step(model: torch.nn.Module, batch: Batch, mode: str) -> None:
    model.zero_grad(set_to_none=True)
    hidden_states(model, batch, mode).float().pow(2).mean().backward()  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", help="default: tiny small; tiny with --smoke")
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--batch", type=int, help="default: 8; 2 with --smoke")
    parser.add_argument("--target-words", type=int, default=2)
    parser.add_argument("--repeats", type=int, help="default: 20; 1 with --smoke")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the usage above")
    args = parser.parse_args(argv)
    args.presets = args.presets or (["tiny"] if args.smoke else ["tiny", "small"])
    args.batch, args.repeats = args.batch or (2 if args.smoke else 8), args.repeats or (1 if args.smoke else 20)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, sdpa, fp32, median of "
          f"{args.repeats}")
    print("| preset | params | tokens | mode | forward ms | fwd+bwd ms | fwd+bwd vs bidirectional |")
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        backbone = Backbone.tiny(preset, args.family)
        model = backbone.model
        batch = bridged_batch(backbone, args.batch, 56, lambda _: args.target_words)
        results = {}
        for mode in ATTENTION_MODES:
            model.eval()
            fwd = timed(partial(forward, model, batch, mode), args.repeats)
            model.train()
            both = timed(partial(train_step, model, batch, mode), args.repeats)
            results[mode] = (fwd, both)
        base = results["bidirectional"][1]
        for mode, (fwd, both) in results.items():
            print(f"| {preset} | {backbone.num_parameters() / 1e6:.2f}M | {tuple(batch.input_ids.shape)} | {mode} "
                  f"| {fwd * 1e3:.1f} | {both * 1e3:.1f} | {both / base:.2f}x |")


if __name__ == "__main__":
    main()
