"""Shared training-test helpers: tiny recipes on a MiniMMEB folder (``mini_dir`` in conftest) and pairs."""

from __future__ import annotations

import json
from pathlib import Path

from cocoa.data.items import Item, TrainPair
from cocoa.recipe import Recipe, builtin, load_recipe

#: A small eval dataset of MiniMMEB used for the end-of-chain evaluation.
EVAL_DATASET = "FashionMNIST"


def stage_overrides(stage: str, root: Path, out: Path, steps: int = 3, batch: int = 4) -> list[str]:
    """Overrides that make a ``configs/tiny`` recipe a few small steps on ``root``."""
    sets = [f"data.root={root}", f"train.output_dir={out}", f"train.max_steps={steps}", "train.epochs=null",
            f"train.batch_size={batch}", "train.warmup_steps=0", "train.log_every=1", "data.max_len=96"]
    if stage == "contrastive":
        sets += ["data.cap=16", "contrastive.gradcache_chunk=4", "contrastive.temperature=0.05"]
    if stage == "bridge":
        sets += ["data.cap=32"]
    return sets


def recipe_path(stage: str) -> Path:
    """The shipped tiny recipe of a stage."""
    return builtin(f"tiny/{stage}")


def tiny_recipe(stage: str, root: Path, out: Path, *extra: str, steps: int = 3, batch: int = 4) -> Recipe:
    return load_recipe(recipe_path(stage), [*stage_overrides(stage, root, out, steps, batch), *extra])


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]


def pairs(image_dir: Path) -> list[TrainPair]:
    """Four query/positive/negative triples mixing image and text rows."""
    img = {n: str(image_dir / f"{n}.png") for n in "abcd"}
    return [
        TrainPair(Item("Represent the given image for classification.", img["a"]), Item("a red dress"),
                  Item("an ankle boot")),
        TrainPair(Item("Find me an everyday image that matches the given caption: a sneaker next to a bag"),
                  Item("", img["b"]), Item("a photo", img["c"])),
        TrainPair(Item("what is in the top-left corner?", img["d"]), Item("an ankle boot"),
                  Item("a red dress on a white background")),
        TrainPair(Item("a photo of a red dress on a white background"), Item("a white background", img["c"]),
                  Item("", img["a"])),
    ]
