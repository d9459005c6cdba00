"""Forward and forward+backward time per batch for each attention mode (not a test).

Every mode runs on the same token layout, ``[image + query text] <EOS> [target text]``,
so only the mask differs; the target is ``eos_bridge`` at most 1.15x ``bidirectional``.

    python benchmarks/speed/attention_speed.py --presets tiny small --batch 8 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from PIL import Image

from cocoa.core.batch import Batch
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.model.attention import ATTENTION_MODES
from cocoa.model.backbone import Backbone
from cocoa.model.forward import hidden_states


def bridged_batch(backbone: Backbone, batch_size: int, target_words: int) -> Batch:
    pre = Preprocessor(backbone, 4096)
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(batch_size):
        image = Image.fromarray((rng.random((56, 56, 3)) * 255).astype("uint8"))
        enc = pre.item(Item("<|image_1|> Represent the given image for classification.", image))
        enc.add([pre.ids.eos], Role.EOS)
        enc.add(pre.text_ids(" ".join(["a red dress on a white background"] * target_words)), Role.TARGET)
        seqs.append(enc)
    return collate(seqs, pre.ids.pad)


def forward(model: torch.nn.Module, batch: Batch, mode: str) -> None:
    with torch.no_grad():
        hidden_states(model, batch, mode)  # type: ignore[arg-type]


def train_step(model: torch.nn.Module, batch: Batch, mode: str) -> None:
    model.zero_grad(set_to_none=True)
    hidden_states(model, batch, mode).float().pow(2).mean().backward()  # type: ignore[arg-type]


def timed(fn: Callable[[], None], repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--target-words", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, sdpa, fp32, median of "
          f"{args.repeats}")
    print("| preset | params | tokens | mode | forward ms | fwd+bwd ms | fwd+bwd vs bidirectional |")
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        backbone = Backbone.tiny(preset, args.family)
        model = backbone.model
        batch = bridged_batch(backbone, args.batch, args.target_words)
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
