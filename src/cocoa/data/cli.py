"""``cocoa data``: build MiniMMEB."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cocoa.cli_errors import reports_errors

app = typer.Typer(help="Data sets: build MiniMMEB from offline sources.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Data commands."""


@app.command()
@reports_errors
def mini(out: Annotated[Path, typer.Option("--out", help="Output folder.")],
         seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
         queries: Annotated[int, typer.Option(min=1, help="Queries per eval dataset.")] = 1000,
         pool: Annotated[int, typer.Option(min=2, help="Candidates per retrieval query.")] = 1000,
         grounding_candidates: Annotated[int, typer.Option(min=2, help="Candidates per grounding query.")] = 100,
         train_size: Annotated[int, typer.Option(min=1, help="Rows per train subset.")] = 2000,
         video_queries: Annotated[int, typer.Option(min=4, help="Clips per video eval set.")] = 200,
         video_train_size: Annotated[int, typer.Option(min=4, help="Clips of the video train subsets.")] = 1000,
         force: Annotated[bool, typer.Option("--force", help="Rebuild even if a complete build exists.")] = False,
         ) -> None:
    """Build MiniMMEB into OUT and print its datasets."""
    from cocoa.data.minimmeb.build import build_mini

    console = Console()
    start = time.perf_counter()
    manifest = build_mini(out, seed=seed, queries=queries, pool=pool, train_size=train_size,
                          grounding_candidates=grounding_candidates, video_queries=video_queries,
                          video_train_size=video_train_size, force=force)
    table = Table(title=f"MiniMMEB in {out} (seed {seed})")
    for column in ("dataset", "meta-task", "IND/OOD", "queries", "candidates per query"):
        table.add_column(column)
    for info in manifest.datasets:
        candidates = (str(info.min_candidates) if info.min_candidates == info.max_candidates
                      else f"{info.min_candidates}-{info.max_candidates}")
        table.add_row(info.name, info.meta_task, info.split, str(info.queries), candidates)
    console.print(table)
    console.print(f"train rows: {sum(manifest.train_rows.values())} in {len(manifest.train_rows)} subsets; "
                  f"pretrain rows: {manifest.pretrain_rows}; {time.perf_counter() - start:.1f} s")
