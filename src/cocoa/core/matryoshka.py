"""Matryoshka dims: validate them, and truncate embeddings to one and re-normalise.

A model trained with a multi-width InfoNCE (``contrastive.matryoshka``) embeds usefully at
each trained width: the first ``d`` coordinates of its L2-normalised embedding, divided by
their own norm. Truncating a normalised vector and re-normalising equals normalising the
truncated raw state, so every path (training loss, encode API, CLI, index, server,
evaluator) truncates the same final vectors the same way.

In cocoa, a *dim* is an embedding's number of features; ``dims`` is a list of them (a
recipe's ``matryoshka.dims``, ``cocoa.json``'s ``dims``, ``cocoa eval --dims``,
``Embedder.dims``) and ``dim`` the one a caller asks for (``Embedder.encode(dim=...)``,
``cocoa encode --dim``). Only the server's wire format says ``dimensions``, as OpenAI's API does.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from cocoa.core.errors import ConfigError

#: The norm floor of ``torch.nn.functional.normalize``, so numpy and torch agree on zero slices.
NORM_EPS = 1e-12


def validate_dims(dims: Sequence[int], field: str, hidden: int | None = None) -> tuple[int, ...]:
    """``dims`` as a tuple, or a :class:`ConfigError` naming ``field``: positive, ascending, unique, ≤ ``hidden``."""
    values = tuple(dims)
    if not values:
        raise ConfigError(f"{field}: give at least one width")
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in values):
        raise ConfigError(f"{field}: dims must be positive integers, got {list(values)}")
    if any(a >= b for a, b in pairwise(values)):
        raise ConfigError(f"{field}: dims must be strictly ascending (sorted, no repeats), got {list(values)}")
    if hidden is not None and values[-1] > hidden:
        raise ConfigError(f"{field}: width {values[-1]} is larger than the model's hidden size {hidden}")
    return values


def truncate(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Float32 ``(n, dim)``: the first ``dim`` columns of ``vectors``, each row L2-normalised."""
    head = np.asarray(vectors, dtype=np.float32)[:, :dim]
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return np.ascontiguousarray(head / np.maximum(norms, NORM_EPS), dtype=np.float32)


def truncate_tensor(x: Tensor, dim: int) -> Tensor:
    """The first ``dim`` features of ``x`` ``(n, d)``, each row L2-normalised (differentiable)."""
    return F.normalize(x[:, :dim], dim=-1, eps=NORM_EPS)


def check_dim(requested: int, supported: Sequence[int], name: str = "dim") -> int:
    """``requested`` if the model serves that dim, else a :class:`ConfigError` naming it as ``name`` and
    listing the ones it does."""
    if requested not in supported:
        raise ConfigError(f"{name}={requested} is not supported by this model; choose one of "
                          f"{', '.join(map(str, supported))}")
    return requested
