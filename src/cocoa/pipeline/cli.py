"""``cocoa train`` (one stage from a recipe) and ``cocoa run`` (a whole pipeline, end to end)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cocoa.core.cli_errors import reports_errors
from cocoa.core.console import make_console


@reports_errors
def train(recipe: Annotated[str, typer.Argument(help="Stage recipe (YAML); builtin:tiny/<stage> for shipped ones.")],
          set_: Annotated[list[str] | None, typer.Option("--set", help="Override a key: a.b=value.")] = None,
          resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint.")] = False,
          ) -> None:
    """Train one stage (pretrain, warmup, bridge or contrastive); works under torchrun."""
    from cocoa.pipeline.train_stage import train_stage
    from cocoa.recipe import load_recipe

    result = train_stage(load_recipe(recipe, set_ or []), resume=resume)
    make_console(stderr=True).print(f"trained {result.steps} steps ({result.samples_per_second:.1f} samples/s); "
                               f"last: {result.last}")


@reports_errors
def run(pipeline: Annotated[str, typer.Argument(help="'mini' (built-in: MiniMMEB end to end) or a pipeline YAML.")],
        out: Annotated[Path, typer.Option(help="Output folder (reruns resume).")] = Path("runs/mini"),
        set_: Annotated[list[str] | None, typer.Option("--set", help="Override in every stage: a.b=value.")] = None,
        ) -> None:
    """Build data, run every stage, evaluate, and write a report."""
    from cocoa.evaluate.report import summary_table
    from cocoa.evaluate.summary import Summary
    from cocoa.pipeline.driver import load_pipeline, run_pipeline

    spec, base = load_pipeline("builtin:pipelines/mini" if pipeline == "mini" else pipeline)
    summary = run_pipeline(spec, base, out, extra=set_ or [])
    if not summary:  # a rank other than the first under torchrun: rank 0 reports
        return
    make_console().print(summary_table(Summary.from_dict(summary)))
    make_console().print(f"report: {out / 'report.md'}")
    for name, reason in summary.get("failed", {}).items():
        make_console(stderr=True).print(f"[red]not scored:[/red] {name}: {reason}")
    if summary.get("failed"):
        raise typer.Exit(1)
