"""``cocoa data``: build MiniMMEB; download MMEB; convert VLM2Vec-V2's video training sets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cocoa.core.cli_errors import reports_errors
from cocoa.core.console import make_console

if TYPE_CHECKING:
    from rich.console import Console

    from cocoa.data.check import TaskCheck

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

    console = make_console()
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


@app.command()
@reports_errors
def llavahound(jsonl: Annotated[Path, typer.Option("--jsonl", help="A LLaVA-Hound JSONL file (id, video, "
                                                                   "conversations).")],
               frames: Annotated[Path, typer.Option("--frames", help="Frame root: one folder per video id "
                                                                     "(train_300k/ in the release).")],
               mode: Annotated[str, typer.Option(help="caption, retrieval or qa (VLM2Vec-V2's three sets).")],
               out: Annotated[Path, typer.Option("--out", help="Output parquet: a train subset (put it in the "
                                                               "training folder).")],
               limit: Annotated[int | None, typer.Option(min=1, help="Rows to keep (default: all).")] = None,
               skip_bad: Annotated[bool, typer.Option(help="Skip malformed rows instead of failing.")] = False,
               ) -> None:
    """Convert a LLaVA-Hound video set into MMEB-train rows with videos (docs/video.md)."""
    from cocoa.data.llavahound import convert, write

    columns, missing = convert(jsonl, frames, mode, limit=limit, skip_bad=skip_bad)
    write(columns, out)
    make_console().print(f"{len(columns['qry'])} rows written to {out}; {missing} rows without frames skipped")


@app.command()
@reports_errors
def get(name: Annotated[str, typer.Argument(help="mmeb-train, mmeb-eval (MMEB-V1), mmeb-v2 (all 78 tasks), "
                                                 "mmeb-v2-image, mmeb-v2-video or mmeb-v2-visdoc.")],
        out: Annotated[Path, typer.Option("--out", help="Folder to download into (a rerun resumes).")],
        revision: Annotated[str | None, typer.Option(help="Branch, tag or commit of the dataset repository.")] = None,
        ) -> None:
    """Download a benchmark or training set from the Hub, unpack its media and check it: the media paths
    its parquet files name, or for MMEB-V2 every task as the readers find it (as `cocoa data check`)."""
    from cocoa.core.errors import DataError
    from cocoa.data.get import get as fetch

    report = fetch(name, out, revision=revision)
    console = make_console()
    table = Table(title=f"{report.repo_id} in {report.folder}")
    table.add_column("")
    table.add_column("")
    rows = [("revision", report.revision or "main"), ("files", report.files), ("bytes", f"{report.bytes:,}"),
            ("archives unpacked", report.archives_unpacked), ("archives already unpacked", report.archives_skipped)]
    if not report.tasks:
        rows += [("parquet files", report.parquet_files), ("media paths checked", report.media_checked),
                 ("missing", report.media_missing)]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
    for fetched in report.fetched:
        console.print(f"fetched {fetched.repo_id} ({fetched.files} files) into {fetched.folder}"
                      + (f" for {fetched.task}" if fetched.task else ""), highlight=False)
    if report.tasks:
        for check in report.tasks:
            print_check(console, check)
        _total(console, report.tasks, None)
        if any(check.status != "found" for check in report.tasks):
            raise typer.Exit(1)
    if report.media_missing:
        raise DataError(f"{report.media_missing} of {report.media_checked} media files the parquet files name are "
                        f"missing (first: {report.first_missing})", file=str(report.folder))


def print_check(console: Console, check: TaskCheck) -> None:
    """One line of ``data check``: the task, its status and what was found or why not."""
    colour = "green" if check.status == "found" else "red"
    what = f"{check.rows} rows, {check.candidates} candidates" if check.status == "found" else check.reason
    left = f", {check.skipped} rows left out (first: {check.reason})" if check.skipped else ""
    where = f" in {check.folder}" if check.status == "found" else ""
    console.print(f"[{colour}]{check.status:9}[/] {check.name} ({check.modality}): {what}{left}{where} "
                  f"[{check.seconds:.1f} s]", highlight=False)


def _total(console: Console, checks: list[TaskCheck], started: float | None) -> None:
    found = [c for c in checks if c.status == "found"]
    took = f"; {time.perf_counter() - started:.1f} s" if started is not None else ""
    console.print(f"{len(found)} of {len(checks)} tasks found ({sum(1 for c in found if c.skipped)} with rows "
                  f"left out); {sum(c.status == 'missing' for c in checks)} missing, "
                  f"{sum(c.status == 'malformed' for c in checks)} malformed{took}", highlight=False)


@app.command()
@reports_errors
def check(folder: Annotated[Path, typer.Argument(help="The data folder (as `cocoa data get mmeb-v2` leaves it, "
                                                      "or VLM2Vec's data/vlm2vec_eval).")],
          benchmark: Annotated[str, typer.Option(help="The benchmark whose tasks to look for.")] = "MMEB-V2",
          images: Annotated[Path | None, typer.Option(help="Image root (default: as `cocoa eval` takes it).")] = None,
          ) -> None:
    """Say for every task of the benchmark what the readers find in FOLDER: found (rows, candidates, rows left
    out for missing media or bad fields), missing (where it looked) or malformed (file, row, field)."""
    from cocoa.core.errors import ConfigError, DataError
    from cocoa.data.check import check_published

    if benchmark.lower() != "mmeb-v2":
        raise ConfigError(f"data check knows MMEB-V2's published layout; got --benchmark {benchmark}")
    if not folder.is_dir():
        raise DataError("no such folder", file=str(folder))
    console = make_console()
    started = time.perf_counter()
    checks = check_published(folder, images, progress=lambda check: print_check(console, check))
    _total(console, checks, started)
    if any(check.status != "found" for check in checks):
        raise typer.Exit(1)
