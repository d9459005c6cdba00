"""The ``cocoa`` command: each subcommand is a thin call into a driver."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cocoa.data.cli import app as data_app
from cocoa.errors import CocoaError
from cocoa.evaluate.cli import app as eval_app
from cocoa.export_cli import app as export_app
from cocoa.inference_cli import encode, index_app, serve

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="CoCoA: train multimodal LLMs into universal embedding models and measure them on MMEB.")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
app.add_typer(index_app, name="index")
app.add_typer(export_app, name="export")
app.command("encode")(encode)
app.command("serve")(serve)
console = Console(stderr=True)


@app.command()
def train(recipe: Annotated[Path, typer.Argument(help="Stage recipe (YAML); builtin:tiny/<stage> for shipped ones.")],
          set_: Annotated[list[str] | None, typer.Option("--set", help="Override a key: a.b=value.")] = None,
          resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint.")] = False,
          ) -> None:
    """Train one stage (pretrain, warmup, bridge or contrastive); works under torchrun."""
    from cocoa.recipes import load_recipe
    from cocoa.run import builtin
    from cocoa.train.recipe import train_stage

    try:
        path = builtin(str(recipe)[len("builtin:"):]) if str(recipe).startswith("builtin:") else recipe
        result = train_stage(load_recipe(path, set_ or []), resume=resume)
    except CocoaError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"trained {result.steps} steps ({result.samples_per_second:.1f} samples/s); last: {result.last}")


@app.command()
def run(pipeline: Annotated[str, typer.Argument(help="'mini' (built-in: MiniMMEB end to end) or a pipeline YAML.")],
        out: Annotated[Path, typer.Option(help="Output folder (reruns resume).")] = Path("runs/mini"),
        set_: Annotated[list[str] | None, typer.Option("--set", help="Override in every stage: a.b=value.")] = None,
        ) -> None:
    """Build data, run every stage, evaluate, and write a report."""
    from cocoa.evaluate.report import summary_table
    from cocoa.evaluate.summary import Summary
    from cocoa.run import load_pipeline, run_pipeline

    try:
        spec, base = load_pipeline("builtin:pipelines/mini" if pipeline == "mini" else pipeline)
        summary = run_pipeline(spec, base, out, extra=set_ or [])
    except CocoaError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    Console().print(summary_table(Summary.from_dict(summary)))
    Console().print(f"report: {out / 'report.md'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
