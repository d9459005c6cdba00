"""Per-row scoring and aggregation, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from cocoa.evaluate.registry import Benchmark, DatasetInfo
from cocoa.evaluate.scoring import precision_at_1, predict_row, score_rows
from cocoa.evaluate.summary import summarize


def test_ties_resolve_to_the_first_index() -> None:
    assert predict_row(0, np.array([0.5, 0.5, 0.1])).correct
    tied = predict_row(0, np.array([0.1, 0.7, 0.7, 0.2]))
    assert tied.pred == 1
    assert tied.gold_rank == 4
    assert tied.top_indices == (1, 2, 3, 0)


def test_score_rows_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    queries = rng.integers(0, 40, size=30)
    candidates = [rng.choice(40, size=int(rng.integers(2, 12)), replace=False) for _ in range(30)]
    predictions = score_rows(emb, queries, candidates)
    correct = 0
    for row, (q, cands) in enumerate(zip(queries, candidates, strict=True)):
        sims = [sum(float(a) * float(b) for a, b in zip(emb[q], emb[c], strict=True)) for c in cands]
        best = max(range(len(sims)), key=lambda i: (sims[i], -i))
        assert predictions[row].pred == best
        assert predictions[row].gold_rank == 1 + sum(s > sims[0] for s in sims)
        assert len(predictions[row].top_indices) == min(5, len(cands))
        correct += best == 0
    assert precision_at_1(predictions) == pytest.approx(100 * correct / 30)


def test_overall_is_the_mean_over_datasets_not_meta_tasks() -> None:
    bench = Benchmark("B", (DatasetInfo("a", "classification", "IND"), DatasetInfo("b", "classification", "OOD"),
                            DatasetInfo("c", "retrieval", "IND")))
    summary = summarize(bench, {"a": 100.0, "b": 0.0, "c": 100.0}, "fp")
    assert summary.complete
    assert summary.meta_tasks["classification"].score == 50.0
    assert summary.overall.score == pytest.approx(200 / 3)
    assert summary.splits["IND"].score == 100.0
    assert summary.splits["OOD"].score == 0.0


def test_a_partial_run_is_flagged() -> None:
    bench = Benchmark("B", (DatasetInfo("a", "vqa", "IND"), DatasetInfo("b", "vqa", "OOD")))
    summary = summarize(bench, {"a": 40.0}, "fp")
    assert not summary.complete
    assert summary.missing == ["b"]
    assert (summary.overall.done, summary.overall.total) == (1, 2)
    data = summary.to_dict()
    assert data["complete"] is False
    assert data["overall"]["partial"] is True
