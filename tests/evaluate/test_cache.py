"""cocoa.evaluate.cache: under two torchrun ranks, rank zero caches every embedding once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cocoa.evaluate.cache import EmbeddingCache

pytestmark = pytest.mark.slow


def test_rank_zero_caches_every_embedding_once(runs: tuple[Path, Path, str]) -> None:
    one, two, _ = runs
    fingerprint = json.loads((one / "summary.json").read_text())["fingerprint"]
    cache_a, cache_b = EmbeddingCache(one / "cache", fingerprint), EmbeddingCache(two / "cache", fingerprint)
    assert set(cache_a._index) == set(cache_b._index) and len(cache_b) > 100
    keys = sorted(cache_a._index)
    np.testing.assert_allclose(cache_b.get(keys), cache_a.get(keys), atol=1e-6)
