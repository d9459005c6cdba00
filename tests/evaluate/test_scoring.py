"""cocoa.evaluate.scoring: per-row judging, ties, top-k and Precision@1 against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from cocoa.evaluate.scoring import judge, precision_at_1, score_rows


def test_ties_resolve_to_the_first_index() -> None:
    assert judge(np.array([[0.5, 0.5, 0.1]])).correct[0]
    tied = judge(np.array([[0.1, 0.7, 0.7, 0.2]]))
    assert tied.pred[0] == 1
    assert tied.gold_rank[0] == 4
    assert tied.top_indices[0].tolist() == [1, 2, 3, 0]


def test_rows_shorter_than_top_k_keep_only_their_candidates() -> None:
    predictions = judge(np.array([[0.2, 0.9, -np.inf], [0.3, 0.1, 0.2]], dtype=np.float32), top_k=5)
    assert predictions.pred.tolist() == [1, 0]
    assert predictions.gold_rank.tolist() == [2, 1]
    records = list(predictions.records())
    assert records[0] == {"query": 0, "pred": 1, "correct": False, "gold_rank": 2, "top_indices": [1, 0],
                          "top_scores": pytest.approx([0.9, 0.2])}
    assert records[1]["top_indices"] == [0, 2, 1]


def test_top_indices_follow_a_stable_descending_sort() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(50, 9)).astype(np.float32)
    counts = rng.integers(1, 10, size=50)
    scores[np.arange(9) >= counts[:, None]] = -np.inf
    predictions = judge(scores, top_k=5)
    for row, count in enumerate(counts):
        order = np.argsort(-scores[row, :count], kind="stable")[:5]
        assert predictions.top_indices[row][predictions.top_indices[row] >= 0].tolist() == order.tolist()
        assert predictions.top_scores[row, :len(order)].tolist() == scores[row, order].tolist()


def test_score_rows_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    queries = rng.integers(0, 40, size=30)
    candidates = [rng.choice(40, size=int(rng.integers(2, 12)), replace=False) for _ in range(30)]
    padded = np.full((30, 11), -1)
    for row, cands in enumerate(candidates):
        padded[row, :len(cands)] = cands
    predictions = score_rows(emb, queries, padded)
    correct = 0
    for row, (q, cands) in enumerate(zip(queries, candidates, strict=True)):
        sims = [sum(float(a) * float(b) for a, b in zip(emb[q], emb[c], strict=True)) for c in cands]
        best = max(range(len(sims)), key=lambda i: (sims[i], -i))
        assert predictions.pred[row] == best
        assert predictions.gold_rank[row] == 1 + sum(s > sims[0] for s in sims)
        assert np.count_nonzero(predictions.top_indices[row] >= 0) == min(5, len(cands))
        correct += best == 0
    assert precision_at_1(predictions) == pytest.approx(100 * correct / 30)
