"""Shared fixtures: tiny backbones, small real images and a small MiniMMEB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cocoa.core.spec import EmbeddingSpec
from cocoa.data.minimmeb.build import build_mini
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
    build_mini(out, seed=0, queries=20, pool=20, train_size=64, grounding_candidates=10)
    return out
