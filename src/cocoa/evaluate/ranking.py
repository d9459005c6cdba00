"""Ranking every query against a whole corpus: hit@1 and NDCG@k with graded relevance.

NDCG is the linear-gain form that MMEB-V2 reports for visual documents (``ndcg_linear@5``,
``RankingMetrics.ndcg_at_k`` in ``src/utils/eval_utils/metrics.py`` of
github.com/TIGER-AI-Lab/VLM2Vec): ``DCG = sum_i gain(rank i) / log2(i + 2)`` over the top ``k``,
divided by the DCG of the query's gains sorted best first, cut at ``k``. The reference ranks with
``np.argsort(-scores)``, which orders exact ties arbitrarily; here ties go to the page that comes
first in the corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cocoa.evaluate.scoring import ROW_CHUNK, best_columns


@dataclass(frozen=True, eq=False)
class Rankings:
    """Per query: the ``top_k`` pages (positions in the corpus, best first), their scores, NDCG@k and hit@1."""

    top_pages: np.ndarray
    top_scores: np.ndarray
    ndcg: np.ndarray
    hit: np.ndarray
    k: int

    def __len__(self) -> int:
        return len(self.ndcg)

    def score(self, metric: str) -> float:
        """``metric`` (``hit@1`` or ``ndcg@<k>``) in percent, the mean over queries."""
        if not len(self):
            return 0.0
        if metric == "hit@1":
            return 100.0 * float(self.hit.mean())
        if metric == f"ndcg@{self.k}":
            return 100.0 * float(self.ndcg.mean())
        raise ValueError(f"rankings cut at {self.k} give hit@1 or ndcg@{self.k}, not {metric}")

    def records(self, doc_ids: tuple[str, ...]) -> Iterator[dict[str, object]]:
        """JSON-ready rows for the prediction file (pages by ``corpus-id``)."""
        for query, (pages, scores) in enumerate(zip(self.top_pages.tolist(), self.top_scores.tolist(), strict=True)):
            kept = [(doc_ids[page], score) for page, score in zip(pages, scores, strict=True) if page >= 0]
            yield {"query": query, "hit@1": bool(self.hit[query]), f"ndcg@{self.k}": float(self.ndcg[query]),
                   "top_ids": [page for page, _ in kept], "top_scores": [score for _, score in kept]}


def rank_corpus(embeddings: np.ndarray, queries: np.ndarray, corpus: np.ndarray, rel_ptr: np.ndarray,
                rel_doc: np.ndarray, rel_gain: np.ndarray, k: int = 5) -> Rankings:
    """Rank ``corpus`` for every query by cosine score (rows of ``embeddings`` are L2-normalised).

    The relevant pages of query ``i`` are ``rel_doc[rel_ptr[i]:rel_ptr[i + 1]]`` with gains ``rel_gain``.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    pages = embeddings[corpus]
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    tops, top_scores, ndcg, hit = [], [], [], []
    for start in range(0, len(queries), ROW_CHUNK):
        rows = np.arange(start, min(start + ROW_CHUNK, len(queries)))
        scores = embeddings[queries[rows]] @ pages.T
        top = best_columns(scores, k)
        if top.shape[1] < k:
            top = np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1)
        gains = np.zeros(scores.shape, dtype=np.float64)
        owner = np.repeat(rows - start, np.diff(rel_ptr)[rows])
        span = np.concatenate([np.arange(rel_ptr[r], rel_ptr[r + 1]) for r in rows])
        gains[owner, rel_doc[span]] = rel_gain[span]
        got = np.where(top >= 0, np.take_along_axis(gains, np.maximum(top, 0), axis=1), 0.0)
        ideal = -np.sort(-gains, axis=1)[:, :k]
        ideal = np.pad(ideal, ((0, 0), (0, k - ideal.shape[1])))
        ideal_dcg = ideal @ discounts
        ndcg.append(np.where(ideal_dcg > 0, (got @ discounts) / np.where(ideal_dcg > 0, ideal_dcg, 1.0), 0.0))
        hit.append(got[:, 0] > 0)
        tops.append(top)
        top_scores.append(np.where(top >= 0, np.take_along_axis(scores, np.maximum(top, 0), axis=1), -np.inf))
    return Rankings(np.concatenate(tops), np.concatenate(top_scores), np.concatenate(ndcg), np.concatenate(hit), k)
