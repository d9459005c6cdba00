"""Helpers the benchmark scripts share: a median timer and the bridged batch they time.

Scripts in the folders below import it after putting this folder on ``sys.path``
(``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))``), so each still runs as
``python benchmarks/<kind>/<script>.py`` from the repository root.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from cocoa.core.batch import Batch
from cocoa.core.tokens import Role
from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.model.backbone import Backbone

QUERY = "<|image_1|> Represent the given image with the following question: what is it?"
TARGET = "a red dress on a white background"


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
