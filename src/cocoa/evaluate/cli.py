"""``cocoa eval``: evaluate a model on an MMEB-style folder, or compare two summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cocoa.core.cli_errors import reports_errors
from cocoa.core.console import make_console
from cocoa.core.defaults import ENCODE_BATCH_SIZE
from cocoa.core.errors import ConfigError
from cocoa.core.packing import PACK_TOKENS_HELP, pack_tokens_option
from cocoa.evaluate.cards import parse_dataset_info
from cocoa.evaluate.encoder import load_encoder
from cocoa.evaluate.report import compare_table, summary_table
from cocoa.evaluate.runner import evaluate
from cocoa.evaluate.summary import Summary

app = typer.Typer(invoke_without_command=True, add_completion=False,
                  help="Evaluate an embedding model on MiniMMEB, MMEB-V1 or MMEB-V2; `compare` two results.")


def parse_dims(text: str) -> list[int]:
    """``"32,64"`` as ``[32, 64]``, or a bad-parameter error naming ``--dims``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"--dims must be comma-separated integers, got {text!r}") from None


def load_summary(path: Path) -> Summary:
    """A ``summary.json`` file, or the one inside an output folder."""
    path = path / "summary.json" if path.is_dir() else path
    try:
        return Summary.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise typer.BadParameter(f"cannot read summary {path}: {exc}") from exc


@app.callback()
@reports_errors
def main(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option(help="Model folder (BatchEncoder.from_pretrained).")] = None,
    data: Annotated[Path | None, typer.Option(help="Benchmark folder (MiniMMEB or MMEB-eval).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder; rerunning it resumes.")] = None,
    datasets: Annotated[str | None, typer.Option(help="Comma-separated dataset names (default: all).")] = None,
    images: Annotated[Path | None, typer.Option(help="Image root (default: DATA/images or DATA).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Encoder batch size.")] = ENCODE_BATCH_SIZE,
    cache: Annotated[Path | None, typer.Option(help="Embedding cache folder (default: OUT/cache).")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip malformed rows instead of failing.")] = False,
    allow_outside_paths: Annotated[bool, typer.Option(
        "--allow-outside-paths", help="Open media paths that lead outside the image root (absolute or '..'); "
                                      "refused by default.")] = False,
    workers: Annotated[int, typer.Option(min=0, help="Preprocessing processes beside the encoder (0: none); "
                                                    "worth it on a GPU, where preprocessing is the bound.")] = 0,
    dims: Annotated[str | None, typer.Option(help="Comma-separated embedding dims (Matryoshka), each "
                                                  "evaluated truncated and re-normalised into OUT/dim-<width>; "
                                                  "default: the full width into OUT.")] = None,
    benchmark: Annotated[str | None, typer.Option(help="MMEB-V1 or MMEB-V2 (default: from a manifest, "
                                                       "else guessed from the dataset names).")] = None,
    protocol: Annotated[str | None, typer.Option(
        help="Embedding protocol: cocoa, cocoa-release, vlm2vec-v1[-low|-mid|-high], vlm2vec-v2 "
             "(default: the one the checkpoint records; cocoa for a folder without cocoa.json).")] = None,
    dataset_info: Annotated[list[str] | None, typer.Option(
        help="NAME=META_TASK[:SPLIT] for a dataset no registry knows (repeatable; instead of a dataset card).")] = None,
    frames: Annotated[int | None, typer.Option(min=1, help="Frames sampled per video (default: the protocol's, 8 "
                                                          "as VLM2Vec-V2; Qwen3-VL-Embedding reports 64).")] = None,
    pack_tokens: Annotated[int | None, typer.Option(min=0, callback=pack_tokens_option, help=PACK_TOKENS_HELP)] = 0,
) -> None:
    """Evaluate MODEL on the datasets in DATA and write scores, predictions and reports to OUT."""
    if ctx.invoked_subcommand is not None:
        return
    from cocoa.core.distributed import rank_and_world

    if model is None or data is None or out is None:
        raise typer.BadParameter("--model, --data and --out are required")
    names = [name.strip() for name in datasets.split(",") if name.strip()] if datasets else None
    console = make_console()
    cards = dict(parse_dataset_info(option) for option in dataset_info or ())
    if dims is not None and (benchmark or cards):
        raise ConfigError("--dims cannot be combined with --benchmark or --dataset-info yet")
    if dims is not None:
        from cocoa.evaluate.dims import DIMS_FILE, dims_table, evaluate_dims

        scores = evaluate_dims(load_encoder(model, workers, protocol, frames, pack_tokens), parse_dims(dims), data, out,
                               names, images, batch_size, cache_dir=cache, skip_bad=skip_bad,
                               allow_outside_paths=allow_outside_paths)
        if rank_and_world()[0] != 0:
            return
        console.print(dims_table(scores))
        console.print(f"per-width results in {out}/dim-<width>; scores in {out / DIMS_FILE}")
        return
    summary = evaluate(load_encoder(model, workers, protocol, frames, pack_tokens), data, out, names, images, batch_size,
                       cache_dir=cache, skip_bad=skip_bad, benchmark=benchmark, dataset_info=cards,
                       allow_outside_paths=allow_outside_paths)
    if rank_and_world()[0] != 0:
        return
    console.print(summary_table(summary))
    ranks = f" on {summary.world_size} ranks" if summary.world_size > 1 else ""
    console.print(f"encoded {summary.encoded} items{ranks}, {summary.cache_hits} cache hits; "
                  f"resumed {len(summary.resumed)} finished datasets; results in {out}")
    if summary.failed:
        for name, reason in summary.failed.items():
            console.print(f"[red]not scored:[/red] {name}: {reason}")
        console.print(f"[red]{len(summary.failed)} dataset(s) failed[/red]; the others are scored in {out}")
        raise typer.Exit(1)


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="summary.json (or its folder) of the baseline.")],
    b: Annotated[Path, typer.Argument(help="summary.json (or its folder) to compare against it.")],
) -> None:
    """Show two results side by side with deltas (B - A)."""
    make_console(width=100).print(compare_table(load_summary(a), load_summary(b), (_label(a), _label(b))))


def _label(path: Path) -> str:
    """A column title for a result: its folder's name for ``.../summary.json``."""
    path = path.resolve()
    return path.parent.name if path.name == "summary.json" else path.name
