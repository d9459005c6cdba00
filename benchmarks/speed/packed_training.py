"""Packed against padded training on MMEB-shaped batches (not a test): tokens computed, samples/s, the bound.

A Qwen2-VL of small dimensions whose vision-tower to language-model FLOP ratio per sample is that
of Qwen2-VL-2B (``--shape 2b``) or 7B (``--shape 7b``) at 448x448, with the real Qwen2-VL
processor settings at that size (1024 patches, 256 merged image tokens per image). Pairs are drawn
as VLM2Vec v1 mixes MMEB-train's 20 subsets into one stream (assumed shares, from the subsets'
kinds; byte-level tokens, so a text of n letters is n tokens):

- 55% image + a 10-30-token instruction -> a 5-40-token text (classification, VQA: 11 subsets);
- 20% a 5-40-token text -> image + a 10-30-token instruction (t2i retrieval: 4 subsets);
- 15% image + text -> image + instruction (composed retrieval, grounding: 3 subsets);
- 10% image + instruction -> a 5-40-token caption (i2t retrieval: 2 subsets).

Each timed step is the stage's objective forward and backward on one global batch: stage 3
(InfoNCE over GradCache chunks, every chunk forward and backward), stage 2 (EOS-bridged
reconstruction) and stage 1 (warm-up: each pair's image-bearing side as ``<image> caption`` with a
10-120-token caption, assumed to span alt-texts to detailed captions; MNTP and MAE). Padded and packed steps alternate, on the same batches. The bound is what
removing every padded language-model token could give, from the measured vision-tower time:
``(vision + lm) / (vision + lm * real / computed)``.

Stage 3's GradCache chunks hold ``--chunk`` sequences in the batch's order, as VLM2Vec's do; with
``--chunk-tokens`` they are cut by computed tokens in both modes (``contrastive.gradcache_tokens``):
padded chunks hold sequences of like length, packed chunks whole rows of the packed batch, so the
padded mode is then already sorted and the ratio measures packing alone.

    python benchmarks/speed/packed_training.py --shape 2b --steps 4
    python benchmarks/speed/packed_training.py --shape 2b --steps 4 --pack-tokens 512 --chunk-tokens 2048
    python benchmarks/speed/packed_training.py --shape 7b --steps 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import timed

from cocoa.core.batch import Batch
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.tokens import Role
from cocoa.data.captions import CaptionPair
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import IMAGE_PLACEHOLDER, Item, TrainPair
from cocoa.model.backbone import Backbone, TokenIds, build_image_processor, build_tokenizer, tiny_text_config
from cocoa.model.forward import vision_features
from cocoa.model.packing import Layout, Packing
from cocoa.stages.bridge import BridgeBuilder
from cocoa.stages.contrastive import (
    ContrastiveBuilder,
    ContrastiveConfig,
    ContrastiveLoss,
    EmbeddingObjective,
    PairBatch,
)
from cocoa.stages.language import LanguageObjective
from cocoa.stages.warmup import WarmupBuilder, WarmupConfig, WarmupObjective

SIDE = 448
#: Language model and vision tower dimensions: FLOP ratio close to Qwen2-VL-2B's / 7B's (printed).
SHAPES = {
    "2b": ({"hidden": 256, "layers": 4, "heads": 4, "kv_heads": 2, "mlp": 768}, {"embed_dim": 160, "depth": 3}),
    "7b": ({"hidden": 512, "layers": 4, "heads": 8, "kv_heads": 4, "mlp": 1536}, {"embed_dim": 144, "depth": 2}),
    "smoke": ({"hidden": 64, "layers": 1, "heads": 4, "kv_heads": 2, "mlp": 128}, {"embed_dim": 32, "depth": 1}),
}
#: Published shapes: vision-tower parameters, language-model parameters without embeddings (``smoke``: 2B's).
REFERENCE = {"2b": (675e6, 1.31e9), "7b": (675e6, 6.5e9), "smoke": (675e6, 1.31e9)}
PATCHES = (SIDE // 14) ** 2


def backbone(shape: str) -> Backbone:
    text_dims, vision_dims = SHAPES[shape]
    tokenizer = build_tokenizer(vocab_size=0)
    ids = TokenIds.from_tokenizer(tokenizer)
    text = tiny_text_config({**text_dims}, "qwen2_vl", tokenizer, ids)
    vision = {**vision_dims, "hidden_size": text_dims["hidden"], "num_heads": 4, "mlp_ratio": 4}
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids.image, video_token_id=ids.video,
                           vision_start_token_id=ids.vision_start, vision_end_token_id=ids.vision_end)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    return Backbone(model, tokenizer, build_image_processor(SIDE * SIDE, SIDE * SIDE), ids)


def flop_ratio(b: Backbone) -> float:
    """Vision FLOPs per image over language-model FLOPs per token (2 x parameters each, attention left out)."""
    vision = sum(p.numel() for p in b.model.model.visual.parameters())
    lm = sum(p.numel() for n, p in b.model.model.language_model.named_parameters() if "embed_tokens" not in n)
    return vision * PATCHES / lm


def text(rng: np.random.Generator, low: int, high: int) -> str:
    return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(low, high + 1))))


def mmeb_pairs(n: int, seed: int, image_dir: Path) -> list[TrainPair]:
    rng = np.random.default_rng(seed)
    images = sorted(image_dir.glob("*.png"))

    def image_item(words: str) -> Item:
        return Item(f"{IMAGE_PLACEHOLDER} {words}", str(images[int(rng.integers(len(images)))]))

    out = []
    for _ in range(n):
        kind = rng.choice(4, p=[0.55, 0.20, 0.15, 0.10])
        if kind == 0:
            out.append(TrainPair(image_item(text(rng, 10, 30)), Item(text(rng, 5, 40))))
        elif kind == 1:
            out.append(TrainPair(Item(text(rng, 5, 40)), image_item(text(rng, 10, 30))))
        elif kind == 2:
            out.append(TrainPair(image_item(text(rng, 10, 40)), image_item(text(rng, 10, 30))))
        else:
            out.append(TrainPair(image_item(text(rng, 10, 30)), Item(text(rng, 5, 40))))
    return out


def token_counts(chunks: list[Batch], pack_tokens: int | None) -> tuple[int, int]:
    """Real tokens, and tokens the language model computes (padded rows, or packed rows)."""
    real = computed = 0
    for chunk in chunks:
        valid = chunk.roles != Role.PAD
        real += int(valid.sum())
        rows_of = Packing(pack_tokens).rows(chunk)
        if rows_of is not None:
            rows, row_len = Layout.of(chunk, rows_of).shape
            computed += rows * row_len
        else:
            computed += valid.shape[0] * valid.shape[1]
    return real, computed


def vision_seconds(b: Backbone, chunks: list[Batch]) -> float:
    """Forward and backward of the vision tower alone over the batch's images."""
    def run() -> None:
        for chunk in chunks:
            if chunk.pixel_values is not None:
                vision_features(b.model, chunk.pixel_values, chunk.image_grid_thw).total().sum().backward()
    return timed(run, 1, warmup=0)


def train_step(stage: str, b: Backbone, chunks: list[Batch], pack: int | None,
               rows: tuple[int, ...] | None = None) -> None:
    """The stage's objective forward and backward over every chunk of one global batch (``rows``:
    the builder's map from each query and positive to its embedded row, when chunks reorder them)."""
    if stage == "contrastive":
        objective = EmbeddingObjective(b.model, PROTOCOLS["cocoa"], Packing(pack))
        emb = torch.cat([objective(chunk) for chunk in chunks])
        pairs = PairBatch(chunks=chunks, n_queries=len(emb) // 2, negative_slots=None, rows=rows)
        ContrastiveLoss(ContrastiveConfig(temperature=0.02))(emb, pairs)[0].backward()
        return
    if stage == "warmup":
        proc = b.image_processor
        objective = WarmupObjective(b.model, WarmupConfig(), 3 * proc.temporal_patch_size * proc.patch_size ** 2,
                                    b.merge_size, Packing(pack))
    else:
        objective = LanguageObjective(b.model, "eos_bridge", packing=Packing(pack))
    for chunk in chunks:
        objective(chunk)["loss"].backward()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="2b")
    parser.add_argument("--smoke", action="store_true", help="seconds long: the smoke shape, 4 pairs, 1 step a stage")
    parser.add_argument("--batch", type=int, default=32, help="pairs per step")
    parser.add_argument("--chunk", type=int, default=8, help="GradCache chunk (sequences)")
    parser.add_argument("--pack-tokens", type=int, default=2048)
    parser.add_argument("--chunk-tokens", type=int, help="stage 3's GradCache chunks cut by this many computed "
                        "tokens (contrastive.gradcache_tokens) instead of --chunk sequences, in both modes")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--stages", nargs="+", choices=("contrastive", "bridge", "warmup"),
                        default=["contrastive", "bridge", "warmup"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=Path, default=Path("runs/packed-bench-images"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape, args.batch, args.chunk, args.steps, args.pack_tokens = "smoke", 4, 2, 1, 1024
    torch.set_num_threads(args.threads)
    args.images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray((rng.random((SIDE, SIDE, 3)) * 255).astype("uint8")).save(args.images / f"{i}.png")
    b = backbone(args.shape)
    b.model.train()
    ours = flop_ratio(b)
    vision_ref, lm_ref = REFERENCE[args.shape]
    chunking = f"chunk {args.chunk_tokens} tokens" if args.chunk_tokens else f"chunk {args.chunk}"
    print(f"shape {args.shape}: vision FLOPs per {SIDE}x{SIDE} image = {ours:.0f} language-model tokens "
          f"(Qwen2-VL-{args.shape.upper()}: {vision_ref * PATCHES / lm_ref:.0f}); batch {args.batch} pairs, "
          f"{chunking}, pack_tokens {args.pack_tokens}, {args.threads} threads")
    pre = Preprocessor(b, 1024, PROTOCOLS["cocoa"])
    for stage in args.stages:
        batches = []
        for step in range(args.steps):
            examples = mmeb_pairs(args.batch, step, args.images)
            if stage == "contrastive":
                built = {mode: ContrastiveBuilder(
                    pre, 0, None if args.chunk_tokens else args.chunk, chunk_tokens=args.chunk_tokens,
                    packing=Packing(args.pack_tokens if mode == "packed" else None))(
                    examples, np.random.default_rng(step)) for mode in ("padded", "packed")}
                batches.append({mode: (pairs.chunks, pairs.rows) for mode, pairs in built.items()})
            elif stage == "warmup":
                rng = np.random.default_rng(step)
                captions = [CaptionPair(Item("", side.image), text(rng, 10, 120))
                            for ex in examples for side in (ex.query, ex.positive) if side.image][:args.batch]
                builder = WarmupBuilder(pre, 0.2, 0.5)
                chunks = [builder(captions[i:i + args.chunk], rng) for i in range(0, len(captions), args.chunk)]
                batches.append({"padded": (chunks, None), "packed": (chunks, None)})
            else:
                seqs = [BridgeBuilder(pre, 0.5).sequence(ex, np.random.default_rng(step)) for ex in examples]
                chunks = [collate(seqs[i:i + args.chunk], b.ids.pad) for i in range(0, len(seqs), args.chunk)]
                batches.append({"padded": (chunks, None), "packed": (chunks, None)})
        times: dict[str, list[float]] = {"padded": [], "packed": []}
        tokens = {"padded": [0, 0], "packed": [0, 0]}
        for step, by_mode in enumerate(batches):
            for mode in ("padded", "packed") if step % 2 == 0 else ("packed", "padded"):
                pack, (chunks, rows) = args.pack_tokens if mode == "packed" else None, by_mode[mode]
                real, computed = token_counts(chunks, pack)
                tokens[mode][0] += real
                tokens[mode][1] += computed
                start = time.perf_counter()
                train_step(stage, b, chunks, pack, rows)
                times[mode].append(time.perf_counter() - start)
                b.model.zero_grad(set_to_none=True)
        vision = statistics.median(vision_seconds(b, by_mode["padded"][0]) for by_mode in batches)
        b.model.zero_grad(set_to_none=True)
        padded, packed = statistics.median(times["padded"]), statistics.median(times["packed"])
        real, computed_padded = tokens["padded"]
        _, computed_packed = tokens["packed"]
        lm = padded - vision
        bound = padded / (vision + lm * real / computed_padded)
        print(f"\n{stage}: real tokens / computed tokens: padded {real / computed_padded:.3f}, "
              f"packed {real / computed_packed:.3f}")
        print(f"| | padded | packed | packed / padded |\n|---|---|---|---|\n"
              f"| samples/s | {args.batch / padded:.1f} | {args.batch / packed:.1f} | {padded / packed:.2f}x |\n"
              f"| vision tower share of a padded step | {vision / padded:.0%} | | |\n"
              f"| bound (no padding in the language model) | | | {bound:.2f}x |")


if __name__ == "__main__":
    main()
