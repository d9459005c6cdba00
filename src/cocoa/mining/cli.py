"""``cocoa mine``: a batch plan and mined hard negatives for stage 3 (:mod:`cocoa.mining.mine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cocoa.core.cli_errors import reports_errors
from cocoa.core.console import make_console
from cocoa.core.defaults import SHARD_SIZE


def parse_subset_ranks(values: list[str]) -> dict[str, tuple[int, int]]:
    """``["VOC2007=2,20"]`` as ``{"VOC2007": (2, 20)}``; a malformed value is a usage error naming it."""
    ranks = {}
    for value in values:
        subset, _, numbers = value.partition("=")
        try:
            p, m = (int(x) for x in numbers.split(","))
        except ValueError:
            raise typer.BadParameter(f"{value!r}: expected SUBSET=P,M", param_hint="--subset-ranks") from None
        ranks[subset.strip()] = (p, m)
    return ranks


def mine(
    data: Annotated[Path, typer.Option(help="MMEB-train folder (or MiniMMEB data folder), as stage 3's data.root.")],
    teacher: Annotated[str, typer.Option(help="The model that ranks: a cocoa model folder or a Hub id "
                                              "(usually the run's stage-2 or stage-3 model).")],
    out: Annotated[Path, typer.Option(help="Plan folder (plan.json, negatives/, embeddings.npz); reruns resume.")],
    images: Annotated[Path | None, typer.Option(help="Image root (default: DATA/images).")] = None,
    subsets: Annotated[str | None, typer.Option(help="Comma-separated subsets (default: all).")] = None,
    cap: Annotated[int | None, typer.Option(min=1, help="Rows per subset, as data.cap (default 100000).")] = 100_000,
    seed: Annotated[int, typer.Option(help="train.seed of the stage that will read the plan (the cap's sample).")] = 0,
    p: Annotated[int, typer.Option(min=0, help="Top ranks skipped (likely false negatives).")] = 10,
    m: Annotated[int, typer.Option("--m", "--window", min=1, help="Ranks [p, p+m) are strong negatives (under "
                                   "torchrun spell it --window: torchrun reads --m as one of its own).")] = 20,
    size: Annotated[int, typer.Option(min=1, help="Rows per community.")] = 8,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch (train.batch_size x processes).")] = 64,
    subset_ranks: Annotated[list[str] | None, typer.Option(
        help="A subset's own p and m, as SUBSET=P,M (repeatable).")] = None,
    negatives: Annotated[int, typer.Option(min=1, help="Hard negatives mined per query (the first in the neg_* "
                                                       "columns, the others in extra_negatives).")] = 1,
    shard_size: Annotated[int, typer.Option(min=1, help="Items per encoded shard (the unit of resuming and of "
                                                        "the split between torchrun processes).")] = SHARD_SIZE,
) -> None:
    """Rank the training set with TEACHER and write a B3 batch plan and hard negatives into OUT
    (under torchrun, each process encodes a share; a killed run resumes)."""

    def run() -> None:
        from cocoa.core.distributed import setup
        from cocoa.data.train_pairs import read_train_pairs
        from cocoa.inference.embedder import Embedder
        from cocoa.mining.mine import MineSettings
        from cocoa.mining.mine import mine as mine_pairs

        names = [s.strip() for s in subsets.split(",") if s.strip()] if subsets else None
        pairs = read_train_pairs(data, names, images or data / "images", cap=cap, seed=seed)
        settings = MineSettings(p=p, m=m, size=size, batch_size=batch_size, seed=seed,
                                subsets=parse_subset_ranks(subset_ranks or []), negatives=negatives)
        plan = mine_pairs(pairs, Embedder.from_pretrained(teacher, device=setup().device), out, settings,
                          shard_size=shard_size)
        make_console().print(f"{plan.rows} rows in {len(plan.communities)} communities, global batches of "
                             f"{plan.batch_size}: {out}/plan.json (data.batches); {negatives} negatives a query in "
                             f"{out}/negatives")

    reports_errors(run)()
