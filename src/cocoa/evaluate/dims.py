"""Evaluate one model at several embedding dims (Matryoshka), encoding every item once.

Each width is an ordinary evaluation of :class:`TruncatedEncoder` in ``OUT/dim-<width>``:
its own score files, reports and resume. The full-width embeddings are cached once under
the model's own fingerprint in the shared cache folder (the same place a plain evaluation
keeps them), so a second width costs only the truncation and the scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from rich.table import Table

from cocoa.core import files
from cocoa.core.defaults import ENCODE_BATCH_SIZE
from cocoa.core.matryoshka import truncate, validate_dims
from cocoa.data.items import Item
from cocoa.evaluate.cache import EmbeddingCache
from cocoa.evaluate.freshness import HASHES_FILE, FileHashes, content_key
from cocoa.evaluate.runner import ItemEncoder, evaluate
from cocoa.evaluate.summary import Summary

#: The cache shard tag of the shared full-width embeddings.
FULL_WIDTH_TAG = "full-width"
#: The per-width group scores, written beside the ``dim-<width>`` folders.
DIMS_FILE = "dims.json"


def width_dir(out_dir: Path, width: int) -> Path:
    """Where the evaluation at ``width`` is written."""
    return Path(out_dir) / f"dim-{width}"


class TruncatedEncoder:
    """``encoder``'s embeddings cut to the first ``width`` features and re-normalised.

    The full-width embeddings are cached by ``key`` (by default each image's content with its
    path, as the evaluator keys its own cache).
    """

    def __init__(self, encoder: ItemEncoder, width: int, full: EmbeddingCache,
                 key: Callable[[Item], tuple[str, str]] = Item.key) -> None:
        self.encoder, self.width, self.full, self.key = encoder, width, full, key

    def encode_items(self, items: Sequence[Item], *, batch_size: int = ENCODE_BATCH_SIZE,
                     show_progress: bool = False) -> np.ndarray:
        missing = list({self.key(item): item for item in items if self.key(item) not in self.full}.values())
        if missing:
            vectors = self.encoder.encode_items(missing, batch_size=batch_size, show_progress=show_progress)
            self.full.add(FULL_WIDTH_TAG, [self.key(item) for item in missing], vectors)
        full = self.full.get([self.key(item) for item in items])
        validate_dims([self.width], "dims", full.shape[1])
        return truncate(full, self.width)

    def fingerprint(self) -> str:
        return f"{self.encoder.fingerprint()}-dim{self.width}"

    @property
    def protocol(self) -> object:
        """The wrapped encoder's protocol (``None`` if it has none)."""
        return getattr(self.encoder, "protocol", None)

    def item_length(self, item: Item) -> int:
        return self.encoder.item_length(item)


def evaluate_dims(encoder: ItemEncoder, dims: Sequence[int], data_dir: Path, out_dir: Path,
                    datasets: Sequence[str] | None = None, image_root: Path | None = None, batch_size: int = ENCODE_BATCH_SIZE,
                    *, cache_dir: Path | None = None, skip_bad: bool = False, allow_outside_paths: bool = False,
                    show_progress: bool = True) -> dict[int, Summary]:
    """The summary of ``encoder`` at each width: any width up to the full one, trained or not.

    Measuring a model at dims it was not trained for is the point of the comparison (plain
    truncation against Matryoshka training), so unlike the serving paths this takes any width.
    Writes ``OUT/dims.json`` (see :func:`dims_scores`) after the last width. Under a process group
    each rank caches the full-width embeddings it computed in shards of its own.
    """
    from cocoa.core.distributed import rank_and_world  # torch, imported late

    checked = validate_dims(dims, "dims")
    cache_root = cache_dir or Path(out_dir) / "cache"
    full = EmbeddingCache(cache_root, encoder.fingerprint())
    hashes = FileHashes(Path(out_dir) / HASHES_FILE)
    key = partial(content_key, hashes=hashes)
    summaries = {width: evaluate(TruncatedEncoder(encoder, width, full, key), data_dir, width_dir(out_dir, width),
                                 datasets, image_root, batch_size, cache_dir=cache_root, skip_bad=skip_bad,
                                 allow_outside_paths=allow_outside_paths,
                                 show_progress=show_progress)
                 for width in checked}
    if rank_and_world()[0] == 0:
        hashes.save()
        files.write_json(Path(out_dir) / DIMS_FILE, {str(w): row for w, row in dims_scores(summaries).items()})
    return summaries


def dims_scores(summaries: dict[int, Summary]) -> dict[int, dict[str, float | None]]:
    """Overall, per-split and per-meta-task means of each width."""
    return {width: {"overall": s.overall.score, **{k: g.score for k, g in s.splits.items()},
                    **{k: g.score for k, g in s.meta_tasks.items()}}
            for width, s in summaries.items()}


def dims_table(summaries: dict[int, Summary]) -> Table:
    """A table with one row per width and one column per group."""
    scores = dims_scores(summaries)
    groups = list(next(iter(scores.values())))
    table = Table("width", *groups, title="score per embedding width (Precision@1, %)")
    for width, row in scores.items():
        table.add_row(str(width), *("-" if row[g] is None else f"{row[g]:.2f}" for g in groups))
    return table

