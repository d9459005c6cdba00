"""cocoa.mining.graph: the preference graph over ranks [p, p + m), METIS communities, mined negatives."""

from __future__ import annotations

import numpy as np
import pytest

from cocoa.core.errors import ConfigError
from cocoa.mining.graph import communities, hard_negatives, preference_graph


def planted(groups: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ranking: its own target first, then its group's rows, then every other row."""
    rng = np.random.default_rng(seed)
    n = groups * size
    group = np.arange(n) // size
    ranked = []
    for i in range(n):
        same = rng.permutation(np.flatnonzero((group == group[i]) & (np.arange(n) != i)))
        ranked.append(np.concatenate([[i], same, rng.permutation(np.flatnonzero(group != group[i]))]))
    return np.stack(ranked), group


def test_a_planted_partition_is_recovered() -> None:
    ranked, group = planted(groups=6, size=10)
    found = communities(preference_graph(ranked, p=1, m=5), size=10)
    assert sorted(row for c in found for row in c) == list(range(60))
    assert [len({int(group[r]) for r in c}) for c in found] == [1] * 6


def test_edges_come_only_from_ranks_p_to_p_plus_m() -> None:
    ranked = np.array([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1], [3, 0, 1, 2]])
    adjacency = preference_graph(ranked, p=2, m=1)  # rank 2 only: 0-2, 1-3, 2-0, 3-1
    assert [a.tolist() for a in adjacency] == [[2], [3], [0], [1]]
    # a row's own target never makes an edge, wherever it ranks
    assert all(i not in a for i, a in enumerate(preference_graph(ranked, p=0, m=4)))


def test_mined_negatives_never_come_from_the_top_p() -> None:
    ranked, _ = planted(groups=4, size=8, seed=1)
    p, m = 3, 6
    negatives = hard_negatives(ranked, p, m, n=2, seed=0)
    for i, row in enumerate(negatives):
        assert set(row.tolist()) <= set(ranked[i, p:p + m].tolist()) - {i}
        assert not set(row.tolist()) & set(ranked[i, :p].tolist())


def test_bad_windows_are_refused() -> None:
    ranked, _ = planted(groups=2, size=4)
    with pytest.raises(ConfigError, match="top 12"):
        preference_graph(ranked, p=4, m=8)
    with pytest.raises(ConfigError, match="n <= m"):
        hard_negatives(ranked, 1, 2, n=3)
