"""A zero that keeps parameters in the graph."""

from __future__ import annotations

from torch import Tensor


def zero_through(*tensors: Tensor) -> Tensor:
    """``0.0`` computed from ``tensors``: added to an output, it gives every weight behind them a (zero)
    gradient, so a step that does not use them (no image in the batch, no masked token) still reduces
    the same parameters on every rank under DDP and FSDP."""
    return sum((t.sum() for t in tensors[1:]), tensors[0].sum()) * 0.0
