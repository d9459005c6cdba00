"""The ``cocoa`` command: mounts each layer's commands; errors are reported by :mod:`cocoa.core.cli_errors`."""

from __future__ import annotations

import typer

from cocoa.data.cli import app as data_app
from cocoa.evaluate.cli import app as eval_app
from cocoa.inference.cli import encode, index_app, serve
from cocoa.integrations.cli import app as export_app
from cocoa.mining.cli import mine
from cocoa.pipeline.cli import run, train

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="CoCoA: train multimodal LLMs into universal embedding models and measure them on MMEB.")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
app.add_typer(index_app, name="index")
app.add_typer(export_app, name="export")
app.command("train")(train)
app.command("run")(run)
app.command("encode")(encode)
app.command("serve")(serve)
app.command("mine")(mine)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
