"""Attention over packed rows: SDPA with a dense mask against compiled flex attention (not a test).

Packed rows hold several sequences behind a segment mask. cocoa passes that mask to SDPA as a
dense ``(rows, 1, R, R)`` tensor, so a row of R tokens costs R^2 in attention whatever its
segments. ``torch.nn.attention.flex_attention`` with a ``BlockMask`` skips the blocks the mask
empties. This times one attention call, forward and forward + backward, for rows of R tokens
cut into MMEB-like segments (290-token image sequences and 5-40-token texts, best-fit packed by
:func:`cocoa.model.packing.pack_rows`), at Qwen2-VL-2B's attention shape (12 query heads of
128, 2 key/value heads, repeated), under two masks: each segment bidirectional, and each segment
causal. Prints the block mask's sparsity, both times, the ratio and the largest difference
between the outputs. flex is compiled once per shape (the compile time is printed). On CPU,
torch has no flex backward, so only the forward (evaluation, encoding, serving) is timed there;
``--device cuda`` times forward + backward too.

    python benchmarks/speed/packed_attention.py --rows-tokens 512 1024 2048
    python benchmarks/speed/packed_attention.py --device cuda --rows-tokens 1024 2048 4096
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import timed

from cocoa.model.packing import pack_rows

HEADS, KV_HEADS, HEAD_DIM = 12, 2, 128


def segments_of_row(tokens: int, rng: np.random.Generator) -> torch.Tensor:
    """The segment of each position of the fullest row that best-fit packing makes from a batch of
    MMEB-like lengths, padded to ``tokens``; padding is segment -1."""
    lengths = [int(rng.integers(280, 300)) if rng.random() < 0.5 else int(rng.integers(5, 41)) for _ in range(64)]
    rows = pack_rows(lengths, tokens)
    fill = [sum(n for n, r in zip(lengths, rows, strict=True) if r == row) for row in range(max(rows) + 1)]
    row = int(np.argmax(fill))
    members = [n for n, r in zip(lengths, rows, strict=True) if r == row]
    seg = torch.repeat_interleave(torch.arange(len(members)), torch.tensor(members))
    return F.pad(seg, (0, tokens - len(seg)), value=-1)


def segment_mask(seg: torch.Tensor, causal: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Whether query position ``q`` may attend to key position ``k``: same segment (and ``k <= q``)."""
    def keep(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        same = (seg[q] == seg[k]) & (seg[q] >= 0)
        return same & (k <= q) if causal else same
    return keep


def attend(kernel: Callable[..., torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           backward: bool, **mask: object) -> torch.Tensor:
    out = kernel(q, k, v, **mask)
    if backward:
        out.sum().backward()
    return out


def measure(tokens: int, seg: torch.Tensor, causal: bool, repeats: int, compiled: Callable[..., torch.Tensor],
            device: torch.device) -> str:
    """One table row: dense SDPA against compiled flex attention on one packed row."""
    seg = seg.to(device)
    keep = segment_mask(seg, causal)
    block = create_block_mask(lambda b, h, q, k: keep(q, k), 1, None, tokens, tokens, device=device.type)
    position = torch.arange(tokens, device=device)
    allowed = keep(position[:, None], position[None, :]) | (seg[:, None] < 0)  # padding attends to itself
    dense = torch.zeros(tokens, tokens, device=device).masked_fill(~allowed, float("-inf"))
    grads = device.type == "cuda"  # torch has no flex backward on CPU
    q = torch.randn(1, HEADS, tokens, HEAD_DIM, device=device, requires_grad=grads)
    k = torch.randn(1, KV_HEADS, tokens, HEAD_DIM, device=device).repeat_interleave(HEADS // KV_HEADS, 1)
    k.requires_grad_(grads)
    v = torch.randn(1, HEADS, tokens, HEAD_DIM, device=device, requires_grad=grads)
    runs = {"sdpa": (F.scaled_dot_product_attention, {"attn_mask": dense}),
            "flex": (compiled, {"block_mask": block})}
    began = time.perf_counter()
    attend(compiled, q, k, v, grads, block_mask=block)
    compile_s = time.perf_counter() - began
    real = seg >= 0
    with torch.no_grad():
        diff = float((attend(*runs["sdpa"][:1], q, k, v, False, **runs["sdpa"][1])[..., real, :]
                      - attend(*runs["flex"][:1], q, k, v, False, **runs["flex"][1])[..., real, :]).abs().max())
    ms = {(name, backward): timed(lambda kernel=kernel, mask=mask, backward=backward:
                                  attend(kernel, q, k, v, backward, **mask), repeats) * 1e3
          for name, (kernel, mask) in runs.items() for backward in ((False, True) if grads else (False,))}
    last = grads

    def both(name: str) -> str:
        return f"{ms[name, False]:.1f} / {ms[name, True]:.1f}" if grads else f"{ms[name, False]:.1f} / -"

    return (f"| {tokens} | {int(seg.max()) + 1} | {'causal' if causal else 'bidirectional'} "
            f"| {block.sparsity():.0f}% | {compile_s:.1f} | {both('sdpa')} | {both('flex')} "
            f"| {ms['sdpa', last] / ms['flex', last]:.2f}x | {diff:.1e} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-tokens", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--smoke", action="store_true", help="seconds long: rows of 384 tokens, one repeat, flex uncompiled")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows_tokens, args.repeats = [384], 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads, fp32, {HEADS} heads x {HEAD_DIM}, "
          f"median of {args.repeats}")
    print("| R | segments | mask | blocks skipped | compile s | SDPA dense fwd / fwd+bwd ms "
          "| flex fwd / fwd+bwd ms | dense / flex (fwd+bwd, or fwd on CPU) | max diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    compiled = flex_attention if args.smoke else torch.compile(flex_attention)
    for tokens in args.rows_tokens:
        seg = segments_of_row(tokens, rng)
        for causal in (False, True):
            print(measure(tokens, seg, causal, args.repeats, compiled, device), flush=True)


if __name__ == "__main__":
    main()
