"""Per-row MMEB scoring: cosine scores, argmax with ties to the first index, gold at 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Queries scored per matrix product; bounds memory at ``chunk x unique items`` floats.
ROW_CHUNK = 256


@dataclass(frozen=True)
class RowPrediction:
    """The outcome of one query: predicted candidate, rank of the gold (1 = best) and the top-k."""

    query: int
    pred: int
    gold_rank: int
    top_indices: tuple[int, ...]
    top_scores: tuple[float, ...]

    @property
    def correct(self) -> bool:
        """Hit@1: the argmax is the gold candidate (index 0)."""
        return self.pred == 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for the prediction file."""
        return {"query": self.query, "pred": self.pred, "correct": self.correct, "gold_rank": self.gold_rank,
                "top_indices": list(self.top_indices), "top_scores": list(self.top_scores)}


def predict_row(query: int, scores: np.ndarray, top_k: int = 5) -> RowPrediction:
    """Judge one row's candidate ``scores`` (gold at index 0); ties resolve to the first index."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    gold_rank = 1 + int(np.count_nonzero(scores > scores[0]))
    return RowPrediction(query, int(order[0]), gold_rank, tuple(int(i) for i in order),
                         tuple(float(scores[i]) for i in order))


def score_rows(embeddings: np.ndarray, query_index: np.ndarray, candidate_index: Sequence[np.ndarray],
               top_k: int = 5) -> list[RowPrediction]:
    """Score every row against its own candidates.

    ``embeddings`` holds one L2-normalised row per unique item; ``query_index[i]`` and
    ``candidate_index[i]`` point into it for row ``i``. Cosine similarity is the dot product.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    predictions: list[RowPrediction] = []
    for start in range(0, len(query_index), ROW_CHUNK):
        stop = min(start + ROW_CHUNK, len(query_index))
        sims = embeddings[query_index[start:stop]] @ embeddings.T
        for offset, row in enumerate(range(start, stop)):
            predictions.append(predict_row(row, sims[offset, candidate_index[row]], top_k))
    return predictions


def precision_at_1(predictions: Sequence[RowPrediction]) -> float:
    """Share of rows whose prediction is the gold candidate, in percent."""
    if not predictions:
        return 0.0
    return 100.0 * sum(p.correct for p in predictions) / len(predictions)
