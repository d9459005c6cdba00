"""Token masking for the reconstruction stages: which positions to hide, and their labels."""

from __future__ import annotations

import numpy as np

from cocoa.core.tokens import IGNORE_INDEX
from cocoa.data.collate import Encoded


def choose_masked(n: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``round(ratio * n)`` positions (at least one when ``n`` and ``ratio`` > 0)."""
    if n == 0 or ratio <= 0:
        return np.zeros(0, dtype=np.int64)
    k = min(n, max(1, round(ratio * n)))
    return np.sort(rng.choice(n, size=k, replace=False))


def mask_tokens(ids: list[int], positions: np.ndarray, mask_id: int) -> tuple[list[int], list[int]]:
    """Replace ``positions`` of ``ids`` by ``mask_id``; labels hold the originals there."""
    masked = list(ids)
    labels = [IGNORE_INDEX] * len(ids)
    for p in positions.tolist():
        labels[p] = ids[p]
        masked[p] = mask_id
    return masked, labels



def mask_share(enc: Encoded, positions: list[int], ratio: float, rng: np.random.Generator, mask_id: int) -> None:
    """Mask a ``ratio`` share of ``positions`` in place; their labels become the original ids."""
    chosen = choose_masked(len(positions), ratio, rng)
    masked, labels = mask_tokens([enc.ids[i] for i in positions], chosen, mask_id)
    for pos, new_id, label in zip(positions, masked, labels, strict=True):
        enc.ids[pos], enc.labels[pos] = new_id, label
