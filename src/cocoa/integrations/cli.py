"""``cocoa export``: make a checkpoint folder loadable by sentence-transformers, or export it for vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cocoa.core.cli_errors import reports_errors
from cocoa.core.console import make_console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Use a cocoa checkpoint from sentence-transformers or vLLM.")
console = make_console(stderr=True)
ModelOpt = Annotated[Path, typer.Option("--model", help="cocoa checkpoint folder.")]


@app.command("sentence-transformers")
def sentence_transformers(model: ModelOpt) -> None:
    """Add modules.json to a checkpoint (trained ones have it) so SentenceTransformer(path) loads it."""
    from cocoa.integrations.st_layout import write_sentence_transformers_files

    if not (model / "config.json").is_file():
        raise typer.BadParameter(f"{model} is not a model folder (no config.json)", param_hint="--model")
    write_sentence_transformers_files(model)
    console.print(f"{model}: load with SentenceTransformer({str(model)!r}, trust_remote_code=True)")


@app.command("vllm")
@reports_errors
def vllm(
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", help="New folder for vLLM (weights hard-linked where possible).")],
    allow_causal_mismatch: Annotated[bool, typer.Option(
        help="Export a bidirectional checkpoint although vLLM runs it causally (its vectors will differ).")] = False,
) -> None:
    """Export for vLLM's pooling runner; refuses a bidirectional checkpoint unless told otherwise."""
    from cocoa.integrations.vllm import SERVE_SCRIPT, export_vllm

    result = export_vllm(model, out, allow_causal_mismatch=allow_causal_mismatch)
    verdict = ("exact: vLLM's causal last-token pooling is this checkpoint's EOS pooling" if result.exact else
               "NOT exact: this checkpoint embeds bidirectionally and vLLM will run it causally")
    console.print(f"exported to {result.folder} ({verdict}); serve with {result.folder / SERVE_SCRIPT}",
                  soft_wrap=True)
