"""Shared fixtures: tiny backbones, small real images and a small MiniMMEB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cocoa.core.spec import EmbeddingSpec
from cocoa.data.minimmeb.build import build_mini
from cocoa.data.videos import write_video
from cocoa.model.backbone import Backbone
from tests.helpers import make_backbone


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
