"""Embed a corpus of any size into a shard folder: streamed, resumable, one share per rank.

Rows are read one at a time (:class:`~cocoa.inference.corpus.Corpus`) and only one shard's
rows and vectors are held at once, so memory does not grow with the corpus. A shard already
written by the same run is skipped, so a run killed at any point resumes at the first shard it
had not finished. Under ``torchrun`` rank ``r`` of ``w`` takes shards ``r, r + w, ...``; rank 0
writes the manifest before and after, once every shard is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cocoa.core.defaults import ENCODE_BATCH_SIZE, SHARD_SIZE
from cocoa.core.distributed import barrier, from_main, rank_and_world
from cocoa.core.errors import CocoaError, ConfigError, DataError, ItemError
from cocoa.core.matryoshka import check_dim
from cocoa.inference.corpus import Corpus, Row
from cocoa.inference.embedder import Embedder
from cocoa.inference.shards import ShardedOutput, ShardPlan


@dataclass(frozen=True)
class EncodeResult:
    """What one rank did: shards written now and shards found finished."""

    rows: int
    shards: int
    written: int
    resumed: int


def encode_corpus(embedder: Embedder, corpus: Corpus, out: str | Path, *, shard_size: int = SHARD_SIZE,
                  batch_size: int = ENCODE_BATCH_SIZE, instruction: str | None = None, dim: int | None = None,
                  show_progress: bool = True) -> EncodeResult:
    """Embed every row of ``corpus`` into the shard folder ``out`` (format: :mod:`cocoa.inference.shards`)."""
    rank, world = rank_and_world()
    width = check_dim(dim, embedder.dims) if dim else embedder.dim
    plan = ShardPlan(embedder.fingerprint, width, shard_size, corpus.describe(), instruction)
    if plan.rows == 0:
        raise DataError("input has no rows", file=str(corpus.path))
    output = ShardedOutput(out, plan)
    failure = None
    if rank == 0:
        try:
            output.start()
        except CocoaError as exc:  # every rank raises it, instead of the others waiting
            failure = str(exc)
    if (failure := from_main(failure)) is not None:
        raise ConfigError(failure)
    mine = range(rank, plan.num_shards, world)
    todo = {k for k in mine if not output.done(k)}
    with tqdm(total=sum(plan.shard_rows(k) for k in mine), initial=sum(plan.shard_rows(k) for k in mine if k not in todo),
              unit="item", desc="encode" if world == 1 else f"encode (rank {rank})", disable=not show_progress,
              smoothing=0.1) as bar:
        rows: list[Row] = []
        last = max(todo, default=-1)
        for index, (number, raw) in enumerate(corpus.raw_rows()):
            shard = index // shard_size
            if shard > last:
                break
            if index >= plan.rows:
                raise DataError(f"the input has more rows than the {plan.rows} counted when the run started "
                                "(did it change?)", file=str(corpus.path))
            if shard not in todo:
                continue
            rows.append(corpus.row(number, raw))
            if index == plan.first_row(shard) + plan.shard_rows(shard) - 1:
                vectors = encode_rows(embedder, rows, instruction, batch_size=batch_size, dim=dim)
                output.write(shard, [r.id for r in rows], [r.raw for r in rows], vectors)
                bar.update(len(rows))
                rows = []
    if rows:
        raise DataError(f"the input ended {len(rows)} rows into a shard it counted as longer (did it change?)",
                        file=str(corpus.path))
    barrier()
    if rank == 0:
        output.finish()
    return EncodeResult(plan.rows, plan.num_shards, len(todo), len(mine) - len(todo))


def encode_rows(embedder: Embedder, rows: Sequence[Row], instruction: str | None = None, *,
                batch_size: int = ENCODE_BATCH_SIZE, dim: int | None = None,
                show_progress: bool = False) -> np.ndarray:
    """:meth:`Embedder.encode` of ``rows``; data that fails only when decoded (an image truncated after an
    intact header) is a :class:`DataError` naming the row's file, line or row, and field."""
    try:
        return embedder.encode([r.as_input() for r in rows], instruction, batch_size=batch_size,
                               dim=dim, show_progress=show_progress)
    except ItemError as exc:
        media = f" ({exc.file})" if exc.file is not None else ""
        raise DataError(exc.message + media, **rows[exc.item].where, field=exc.field) from exc
