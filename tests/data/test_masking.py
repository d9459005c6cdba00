"""Token masking: how many positions, which, and the labels left at them."""

from __future__ import annotations

import numpy as np
import pytest

from cocoa.core.tokens import IGNORE_INDEX
from cocoa.data.masking import choose_masked, mask_tokens

# --- masking ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "ratio", "k"), [(10, 0.2, 2), (100, 0.7, 70), (13, 0.2, 3), (3, 0.1, 1), (0, 0.5, 0),
                                               (5, 0.0, 0), (4, 1.0, 4)])
def test_choose_masked_ratio(n: int, ratio: float, k: int) -> None:
    chosen = choose_masked(n, ratio, np.random.default_rng(0))
    assert len(chosen) == k
    assert len(set(chosen.tolist())) == k
    assert np.all(np.diff(chosen) > 0)
    assert np.all((chosen >= 0) & (chosen < max(n, 1)))


def test_choose_masked_deterministic_per_seed() -> None:
    a = choose_masked(50, 0.3, np.random.default_rng(7))
    b = choose_masked(50, 0.3, np.random.default_rng(7))
    c = choose_masked(50, 0.3, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mask_tokens_labels_only_at_masked_positions() -> None:
    ids = [5, 6, 7, 8, 9]
    masked, labels = mask_tokens(ids, np.array([1, 3]), 99)
    assert masked == [5, 99, 7, 99, 9]
    assert labels == [IGNORE_INDEX, 6, IGNORE_INDEX, 8, IGNORE_INDEX]
    assert ids == [5, 6, 7, 8, 9]  # input untouched
