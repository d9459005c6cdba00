"""Shifted cross-entropy for causal LM and masked next-token prediction (MNTP).

In both, the output at position ``i - 1`` predicts token ``i``; only positions whose label
is not ``IGNORE_INDEX`` count. The LM head is applied to those positions only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cocoa.data.collate import IGNORE_INDEX


def shifted_cross_entropy(hidden: Tensor, labels: Tensor, head: nn.Module) -> Tensor:
    """Mean CE of ``head(hidden[:, i-1])`` against ``labels[:, i]`` over labelled positions."""
    targets = labels[:, 1:]
    chosen = targets != IGNORE_INDEX
    if not bool(chosen.any()):
        return hidden.sum() * 0.0
    logits = head(hidden[:, :-1][chosen])
    return F.cross_entropy(logits.float(), targets[chosen])


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


def token_accuracy(hidden: Tensor, labels: Tensor, head: nn.Module) -> Tensor:
    """Share of labelled positions whose shifted prediction is right (for logging)."""
    targets = labels[:, 1:]
    chosen = targets != IGNORE_INDEX
    if not bool(chosen.any()):
        return torch.zeros((), device=hidden.device)
    with torch.no_grad():
        pred = head(hidden[:, :-1][chosen]).argmax(-1)
    return (pred == targets[chosen]).float().mean()
