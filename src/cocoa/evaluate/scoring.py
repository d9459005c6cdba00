"""Per-row MMEB scoring: cosine scores, argmax with ties to the first index, gold at 0 (or the first few)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Queries scored per matrix product; bounds memory at ``chunk x unique items`` floats.
ROW_CHUNK = 256


@dataclass(frozen=True, eq=False)
class Predictions:
    """Per query: the predicted candidate, the rank of the (best) gold (1 = best) and the top-k.

    ``top_indices`` holds ``-1`` past a row's candidate count (and ``top_scores`` ``-inf``); the
    first ``golds[i]`` candidates of row ``i`` are gold (one each when ``golds`` is ``None``).
    """

    pred: np.ndarray
    gold_rank: np.ndarray
    top_indices: np.ndarray
    top_scores: np.ndarray
    golds: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pred)

    @property
    def correct(self) -> np.ndarray:
        """Hit@1 per query: the argmax is a gold candidate (index 0, or below ``golds``)."""
        return self.pred == 0 if self.golds is None else self.pred < self.golds

    def records(self) -> Iterator[dict[str, object]]:
        """JSON-ready rows for the prediction file."""
        kept = (self.top_indices >= 0).sum(axis=1).tolist()
        columns = (self.pred.tolist(), self.gold_rank.tolist(), self.top_indices.tolist(), self.top_scores.tolist())
        for query, (pred, rank, indices, scores) in enumerate(zip(*columns, strict=True)):
            yield {"query": query, "pred": pred, "correct": bool(self.correct[query]), "gold_rank": rank,
                   "top_indices": indices[:kept[query]], "top_scores": scores[:kept[query]]}


def judge(scores: np.ndarray, top_k: int = 5, golds: np.ndarray | None = None) -> Predictions:
    """Judge each row of candidate ``scores`` (gold in column 0, or in the first ``golds[i]`` columns;
    ``-inf`` past a row's candidates); ties resolve to the first index. A row without gold ranks it
    past its last candidate."""
    top_indices = best_columns(scores, top_k)
    top_scores = np.where(top_indices >= 0, np.take_along_axis(scores, top_indices, axis=1), -np.inf)
    if golds is None:
        gold_rank = 1 + np.count_nonzero(scores > scores[:, :1], axis=1)
    else:
        gold_mask = np.arange(scores.shape[1])[None, :] < golds[:, None]
        best_gold = np.where(gold_mask, scores, -np.inf).max(axis=1, initial=-np.inf)
        gold_rank = np.where(golds > 0, 1 + np.count_nonzero(scores > best_gold[:, None], axis=1),
                             1 + np.count_nonzero(np.isfinite(scores), axis=1))
    return Predictions(top_indices[:, 0], gold_rank, top_indices, top_scores, golds)


def best_columns(scores: np.ndarray, top_k: int) -> np.ndarray:
    """Per row the columns of the ``top_k`` highest scores, best first, ties to the lower column, and
    ``-1`` once only ``-inf`` is left: a stable descending sort cut at ``top_k``, without sorting rows."""
    remaining = scores.copy()
    rows = np.arange(len(scores))
    picks = []
    for _ in range(min(top_k, scores.shape[1])):
        best = remaining.argmax(axis=1)
        picks.append(np.where(np.isneginf(remaining[rows, best]), -1, best))
        remaining[rows, best] = -np.inf
    return np.stack(picks, axis=1)


def candidate_scores(embeddings: np.ndarray, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine score of each row's query with each of its candidates, ``-inf`` where ``candidates`` is ``-1``.

    ``embeddings`` holds one L2-normalised row per unique item; ``queries[i]`` and ``candidates[i]``
    point into it for row ``i``.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    scores = np.empty(candidates.shape, dtype=np.float32)
    for start in range(0, len(queries), ROW_CHUNK):
        rows = slice(start, start + ROW_CHUNK)
        sims = embeddings[queries[rows]] @ embeddings.T
        ids = candidates[rows]
        scores[rows] = np.where(ids >= 0, np.take_along_axis(sims, np.maximum(ids, 0), axis=1), -np.inf)
    return scores


def score_rows(embeddings: np.ndarray, queries: np.ndarray, candidates: np.ndarray, top_k: int = 5,
               golds: np.ndarray | None = None) -> Predictions:
    """Score every row against its own candidates (see :func:`candidate_scores` and :func:`judge`)."""
    return judge(candidate_scores(embeddings, queries, candidates), top_k, golds)


def precision_at_1(predictions: Predictions) -> float:
    """Share of rows whose prediction is the gold candidate, in percent."""
    if not len(predictions):
        return 0.0
    return 100.0 * float(np.count_nonzero(predictions.correct)) / len(predictions)
