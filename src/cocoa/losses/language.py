"""Shifted cross-entropy for causal LM and masked next-token prediction (MNTP).

In both, the output at position ``i - 1`` predicts token ``i``; only positions whose label
is not ``IGNORE_INDEX`` count. The LM head is applied to those positions only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cocoa.core.autograd import zero_through
from cocoa.core.tokens import IGNORE_INDEX


def shifted_cross_entropy(hidden: Tensor, labels: Tensor, head: nn.Module) -> Tensor:
    """Mean CE of ``head(hidden[:, i-1])`` against ``labels[:, i]`` over labelled positions."""
    targets = labels[:, 1:]
    chosen = targets != IGNORE_INDEX
    if not bool(chosen.any()):
        return zero_through(hidden)
    logits = head(hidden[:, :-1][chosen])
    return F.cross_entropy(logits.float(), targets[chosen])


def token_accuracy(hidden: Tensor, labels: Tensor, head: nn.Module) -> Tensor:
    """Share of labelled positions whose shifted prediction is right (for logging)."""
    targets = labels[:, 1:]
    chosen = targets != IGNORE_INDEX
    if not bool(chosen.any()):
        return torch.zeros((), device=hidden.device)
    with torch.no_grad():
        pred = head(hidden[:, :-1][chosen]).argmax(-1)
    return (pred == targets[chosen]).float().mean()
