"""Helpers the benchmark scripts share: a median timer, the bridged batch they time, and the tiny
model, data and recipe overrides of their ``--smoke`` runs (seconds long; the suite runs them).

Scripts in the folders below import it after putting this folder on ``sys.path``
(``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))``), so each still runs as
``python benchmarks/<kind>/<script>.py`` from the repository root.
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cocoa.core.batch import Batch
from cocoa.core.errors import ConfigError
from cocoa.core.spec import EmbeddingSpec
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.data.minimmeb.build import build_mini
from cocoa.model.backbone import Backbone
from cocoa.recipe import load_recipe
from cocoa.stages.sections import RecipeBase

QUERY = "<|image_1|> Represent the given image with the following question: what is it?"
TARGET = "a red dress on a white background"
#: The eval sets of a smoke run: small ones covering every image meta-task and both splits, the two
#: cheapest first (one label set: ten candidates shared by every query).
SMOKE_DATASETS = ["FashionMNIST", "FashionTinted", "SceneT2I", "SceneVQA", "SceneGrounding"]


def sync() -> None:
    """Wait for queued GPU work (a no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` calls, GPU work included."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        sync()
        began = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def random_image(rng: np.random.Generator, side: int) -> Image.Image:
    """A ``side`` x ``side`` RGB image of uniform noise."""
    return Image.fromarray((rng.random((side, side, 3)) * 255).astype("uint8"))


def bridged_batch(backbone: Backbone, rows: int, side: int, target_repeats: Callable[[int], int],
                  seed: int = 0) -> Batch:
    """``[image + query text] <EOS> [target text]`` rows, the target repeated ``target_repeats(row)`` times."""
    pre = Preprocessor(backbone)
    rng = np.random.default_rng(seed)
    seqs = []
    for row in range(rows):
        enc = pre.item(Item(QUERY, random_image(rng, side)))
        enc.add([pre.ids.eos], Role.EMBEDDING)
        enc.add(pre.text_ids(" ".join([TARGET] * target_repeats(row))), Role.TARGET)
        seqs.append(enc)
    return collate(seqs, pre.ids.pad)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that runs ``script`` with ``argv`` (``None``: this process's arguments), for the records."""
    return shlex.join(["python", os.path.relpath(script), *(sys.argv[1:] if argv is None else argv)])


def finished(folder: Path, recipe: RecipeBase) -> bool:
    """Whether ``folder`` holds a finished training run of exactly ``recipe`` (its ``recipe.yaml``,
    read by today's schema, so a key added since with the default the run trained with still matches).

    An experiment reuses such runs when resumed. A finished run of any other recipe (another
    commit's defaults, other overrides) is refused with the keys that differ, and one with a key the
    schema no longer has as unreadable; neither is reused. A key added since counts at its default,
    so a new key's default must be what the code did before it existed.
    """
    if not (folder / "result.json").is_file() or not (folder / "model").is_dir():
        return False
    try:
        saved = _flat(load_recipe(folder / "recipe.yaml").model_dump())
    except ConfigError as error:
        raise SystemExit(f"{folder} holds a finished run of a recipe this version cannot read ({error}): "
                         "move it away or choose another --out") from None
    wanted = _flat(recipe.model_dump())
    differ = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
    if differ:
        raise SystemExit(f"{folder} holds a finished run of another recipe ({', '.join(differ)} differ): "
                         "move it away or choose another --out")
    return True


def _flat(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def smoke_folder(given: Path | None, name: str) -> Path:
    """``given``, or a new temporary folder for a smoke run's outputs (kept, so that they can be read)."""
    return given or Path(tempfile.mkdtemp(prefix=f"{name}-smoke-"))


def smoke_data(folder: Path) -> Path:
    """A MiniMMEB of a few rows per set in ``folder`` (reused when already built there)."""
    build_mini(folder, queries=4, pool=4, train_size=8, grounding_candidates=4, video_queries=4, video_train_size=4)
    return folder


def smoke_model(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny model folder: weights, tokenizer, image processor and ``cocoa.json``."""
    Backbone.tiny("tiny", seed=seed).save(folder)
    EmbeddingSpec().save(folder)
    return folder


def smoke_sets(stage: str) -> list[str]:
    """Overrides that cut a ``tiny/<stage>`` recipe to one step of four rows."""
    sets = ["train.max_steps=1", "train.epochs=null", "train.batch_size=4", "train.warmup_steps=0"]
    return [*sets, "contrastive.gradcache_chunk=4"] if stage == "contrastive" else sets
