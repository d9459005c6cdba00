"""The preference graph over training rows and its communities (B3, arXiv 2505.11293, section 3).

A teacher ranks every target for every query. For query ``i`` the targets at ranks ``[p, p + m)``
are strong negatives: close to the query but, past the top ``p`` (where false negatives sit), not
its answer. Each such target ``j`` gives an edge ``i - j`` (row ``j`` owns target ``j``). METIS
cuts the graph into communities of about ``size`` rows with as few cut edges as it can, so rows
that are hard negatives of each other end up in one community, and a batch made of whole
communities holds them together.
"""

from __future__ import annotations

import numpy as np

from cocoa.core.errors import ConfigError


def preference_graph(ranked: np.ndarray, p: int, m: int) -> list[np.ndarray]:
    """Undirected adjacency lists over rows from ``ranked`` ``(rows, k)``: row ``i``'s targets by
    decreasing teacher similarity (``-1`` pads). Ranks ``[p, p + m)`` give edges; the row's own
    target never does, wherever it ranks.

    Raises:
        ConfigError: when ``p + m`` is more than the ranks given.
    """
    if p < 0 or m < 1:
        raise ConfigError(f"need p >= 0 and m >= 1, got p={p}, m={m}")
    if p + m > ranked.shape[1]:
        raise ConfigError(f"ranks [{p}, {p + m}) need the top {p + m} targets per query; {ranked.shape[1]} given")
    rows = ranked.shape[0]
    window = ranked[:, p:p + m]
    source = np.repeat(np.arange(rows), m)
    target = window.reshape(-1)
    keep = (target >= 0) & (target != source)
    source, target = source[keep], target[keep]
    pairs = np.unique(np.concatenate([np.stack([source, target], 1), np.stack([target, source], 1)]), axis=0)
    starts = np.searchsorted(pairs[:, 0], np.arange(rows + 1))
    return [pairs[starts[i]:starts[i + 1], 1] for i in range(rows)]


def communities(adjacency: list[np.ndarray], size: int, seed: int = 0) -> list[list[int]]:
    """Rows cut into communities of about ``size`` (METIS k-way, via pymetis), each sorted, ordered
    by their first row; every row is in exactly one."""
    import pymetis

    rows = len(adjacency)
    if size < 1:
        raise ConfigError(f"community size must be positive, got {size}")
    parts = -(-rows // size)
    if parts <= 1:
        return [list(range(rows))] if rows else []
    options = pymetis.Options(seed=seed)
    _, membership = pymetis.part_graph(parts, adjacency=[a.tolist() for a in adjacency], options=options)
    groups: dict[int, list[int]] = {}
    for row, part in enumerate(membership):
        groups.setdefault(int(part), []).append(row)
    return sorted(groups.values(), key=lambda g: g[0])


def hard_negatives(ranked: np.ndarray, p: int, m: int, n: int, seed: int = 0) -> np.ndarray:
    """``(rows, n)`` targets drawn without replacement from each row's ranks ``[p, p + m)`` (never its
    own target; ``-1`` where the window holds fewer than ``n``)."""
    if n < 1 or n > m:
        raise ConfigError(f"need 1 <= n <= m negatives per row, got n={n}, m={m}")
    rng = np.random.default_rng(seed)
    out = np.full((ranked.shape[0], n), -1, dtype=np.int64)
    for i, window in enumerate(ranked[:, p:p + m]):
        choices = window[(window >= 0) & (window != i)]
        if len(choices):
            picked = rng.choice(choices, size=min(n, len(choices)), replace=False)
            out[i, :len(picked)] = picked
    return out
