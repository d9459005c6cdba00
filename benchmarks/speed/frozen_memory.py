"""Peak memory of a LoRA stage's model with frozen weights in float32 against bf16 (not a test).

Saves a randomly initialised model of Qwen2-VL-2B's published shape (bf16 on disk), then in a
fresh process each: ``Backbone.load`` in the frozen dtype cocoa picks (float32 without bf16
autocast, bf16 with it: ``pipeline.train_stage.frozen_dtype``), and ``prepare_model`` with the
paper's DoRA r 8 on the language model and the vision tower. Prints the peak RSS of each process
and the bytes of frozen and trained parameters.

    python benchmarks/speed/frozen_memory.py --work runs/frozen-memory
    python benchmarks/speed/frozen_memory.py --smoke     # a two-layer model, in a temporary folder

``--smoke`` measures the same way a randomly initialised model of :data:`SMOKE_TEXT` and
:data:`SMOKE_VISION` (a few MiB) instead.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

#: Qwen2-VL-2B-Instruct's published config (text and vision towers); the tokenizer is a tiny one.
TEXT = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
        "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        "tie_word_embeddings": True}
VISION = {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4}
#: The smoke run's shape: two layers of Qwen2-VL's head size, a one-block vision tower.
SMOKE_TEXT = {**TEXT, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 512}
SMOKE_VISION = {"depth": 1, "embed_dim": 64, "hidden_size": 256, "num_heads": 2, "mlp_ratio": 2}


def model_folder(work: Path, smoke: bool) -> Path:
    """Where the measured model is saved under ``work``."""
    return work / ("smoke-random" if smoke else "qwen2-vl-2b-random")


def save_model(folder: Path, text: dict, vision: dict) -> None:
    """A randomly initialised Qwen2-VL of ``text`` and ``vision`` shapes in bf16, with the tiny tokenizer."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from cocoa.core.spec import EmbeddingSpec
    from cocoa.model.backbone import Backbone, TokenIds, build_image_processor, build_tokenizer

    tokenizer = build_tokenizer()
    ids = TokenIds.from_tokenizer(tokenizer)
    config = Qwen2VLConfig(text_config={**text, "bos_token_id": ids.eos, "eos_token_id": ids.eos,
                                        "pad_token_id": ids.pad}, vision_config=vision, image_token_id=ids.image,
                           video_token_id=ids.video, vision_start_token_id=ids.vision_start,
                           vision_end_token_id=ids.vision_end)
    model = Qwen2VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    Backbone(model, tokenizer, build_image_processor(), ids).save(folder)
    EmbeddingSpec().save(folder)


def measure(folder: Path, precision: str) -> None:
    from cocoa.pipeline.train_stage import build_backbone, frozen_dtype, prepare_model
    from cocoa.recipe import builtin, load_recipe

    recipe = load_recipe(builtin("paper/contrastive"), [f"model.path={folder}", "data.root=.",
                                                        "train.output_dir=.", f"train.precision={precision}"])
    dtype = frozen_dtype(recipe, torch.device("cpu"))
    model = prepare_model(recipe, build_backbone(recipe, dtype), masks_tokens=False)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"| {precision} | {dtype} | {frozen / 2**30:.2f} | {trained / 2**20:.1f} | {peak:.2f} |", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="default: runs/frozen-memory; with --smoke a temporary folder")
    parser.add_argument("--measure", choices=("fp32", "bf16"), help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    if args.work is None:
        args.work = Path(tempfile.mkdtemp(prefix="frozen-memory-smoke-")) if args.smoke else Path("runs/frozen-memory")
    folder = model_folder(args.work, args.smoke)
    if args.measure:
        measure(folder, args.measure)
        return
    if not (folder / "config.json").is_file():
        save_model(folder, *((SMOKE_TEXT, SMOKE_VISION) if args.smoke else (TEXT, VISION)))
    print("| train.precision | frozen weights | frozen GiB | trained MiB | peak RSS GiB |\n|---|---|---|---|---|",
          flush=True)
    for precision in ("fp32", "bf16"):
        subprocess.run([sys.executable, __file__, "--work", str(args.work), "--measure", precision,
                        *["--smoke"] * args.smoke], check=True)


if __name__ == "__main__":
    main()
