"""Fixtures shared across packages: tiny models, images and videos, MiniMMEB, MMEB-V2, stage-0 runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cocoa.core.spec import EmbeddingSpec
from cocoa.data.get import get
from cocoa.data.minimmeb.build import build_mini
from cocoa.data.videos import write_video
from cocoa.inference.embedder import Embedder
from cocoa.model.backbone import Backbone
from cocoa.pipeline.train_stage import train_stage
from tests.helpers import PRETRAIN_STEPS, make_backbone, matryoshka_model, tiny_recipe
from tests.mmeb_v2_published import fake_snapshot_download, hub_trees


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few deterministic RGB images of the sizes MiniMMEB uses."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, size in (("a", 56), ("b", 56), ("c", 112), ("d", 84)):
        pixels = (rng.random((size, size, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Videos as MMEB-V2 ships them and as files: ``clip/`` (5 noise frames, natural names), ``long/``
    (12 frames), ``still/`` (2 copies of ``a.png``'s pixels) and ``clip.mp4`` (12 frames at 4 fps)."""
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(1)
    for name, count, size in (("clip", 5, (56, 84)), ("long", 12, (56, 56))):
        (folder / name).mkdir()
        for i in range(count):
            Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8")).save(folder / name / f"frame_{i + 1}.png")
    (folder / "still").mkdir()
    still = (np.random.default_rng(0).random((56, 56, 3)) * 255).astype("uint8")
    for i in range(2):
        Image.fromarray(still).save(folder / "still" / f"{i}.png")
    write_video(folder / "clip.mp4", [(rng.random((48, 64, 3)) * 255).astype("uint8") for _ in range(12)], fps=4)
    return folder


@pytest.fixture(scope="session")
def tiny_backbone() -> Backbone:
    return make_backbone()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny checkpoint folder (weights, tokenizer, image processor, cocoa.json)."""
    folder = tmp_path_factory.mktemp("model")
    make_backbone().save(folder)
    EmbeddingSpec().save(folder)
    return folder


@pytest.fixture(scope="session")
def mini_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MiniMMEB (built once per session): 20 queries per eval dataset, 64 rows per train subset."""
    out = tmp_path_factory.mktemp("minimmeb")
    build_mini(out, seed=0, queries=20, pool=20, train_size=64, grounding_candidates=10, video_queries=12,
               video_train_size=24)
    return out


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    """A tiny backbone of the test module's own."""
    return make_backbone()


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> Embedder:
    """``model_dir`` behind the encode API."""
    return Embedder.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="session")
def matryoshka_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint folder serving the Matryoshka dims of ``tests.helpers.matryoshka_model``."""
    return matryoshka_model(tmp_path_factory.mktemp("matryoshka-model"))


@pytest.fixture(scope="session")
def trees() -> dict[str, dict[str, bytes]]:
    """The Hub trees and archives of MMEB-V2 as published (``tests/mmeb_v2_published.py``)."""
    return hub_trees()


@pytest.fixture(scope="session")
def fetched(tmp_path_factory: pytest.TempPathFactory, trees: dict) -> Path:
    """A folder ``cocoa data get mmeb-v2`` filled from ``trees``; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("mmeb-v2")
    get("mmeb-v2", out, download=fake_snapshot_download(trees))
    return out


@pytest.fixture(scope="session")
def pretrained(mini_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage 0 trained for a few dozen small steps at a constant learning rate."""
    out = tmp_path_factory.mktemp("runs") / "stage0"
    recipe = tiny_recipe("pretrain", mini_dir, out, "train.schedule=constant", "train.lr=2.0e-3",
                         "train.weight_decay=0", steps=PRETRAIN_STEPS, batch=4)
    result = train_stage(recipe)
    assert result.steps == PRETRAIN_STEPS and result.resumed_from == 0
    return out


@pytest.fixture(scope="session")
def pretrained_qwen3_vl(mini_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage 0 of a tiny Qwen3-VL, a handful of steps: the start of its stage chain."""
    out = tmp_path_factory.mktemp("runs") / "stage0-qwen3-vl"
    result = train_stage(tiny_recipe("pretrain", mini_dir, out, "model.family=qwen3_vl", steps=3))
    assert result.steps == 3
    return out
