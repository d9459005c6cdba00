"""``cocoa encode``, ``cocoa index build|search`` and ``cocoa serve``.

Inputs are JSONL or parquet rows ``{"id": ..., "text": ..., "image": "path", "video": ...}``, or
a folder of images (:mod:`cocoa.inference.corpus`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from cocoa.core.cli_errors import reports_errors
from cocoa.core.console import make_console
from cocoa.core.defaults import ENCODE_BATCH_SIZE, SHARD_SIZE
from cocoa.core.errors import DataError
from cocoa.core.files import atomic_path, write_npy
from cocoa.core.packing import PACK_TOKENS_HELP, pack_tokens_option
from cocoa.inference.corpus import Corpus, read_rows
from cocoa.inference.settings import DEFAULTS, SERVE_PACK_TOKENS

if TYPE_CHECKING:
    from cocoa.inference.corpus_encoder import EncodeResult
    from cocoa.inference.embedder import Embedder

T = TypeVar("T")
ModelOpt = Annotated[Path, typer.Option("--model", help="Model folder (Embedder.from_pretrained).")]
InstructionOpt = Annotated[str | None, typer.Option(help="Instruction prepended to every input.")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Encoder batch size.")]
DimOpt = Annotated[int | None, typer.Option(
    min=1, help="Embedding width: one the model was trained for (Matryoshka) or the full one (default).")]
PackTokensOpt = Annotated[int | None, typer.Option(min=0, callback=pack_tokens_option, help=PACK_TOKENS_HELP)]
AllowOutsideOpt = Annotated[bool, typer.Option(
    "--allow-outside-paths", help="Open media paths that lead outside the input's folder (absolute or '..'); "
                                  "refused by default.")]

index_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Build a vector index from a JSONL file, or search one.")


def read_key(path: Path) -> str:
    """The API key on the first line of ``path``, or a :class:`DataError` naming the file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the API key: {exc}", file=str(path)) from exc
    if not lines or not lines[0].strip():
        raise DataError("the API key file is empty", file=str(path))
    return lines[0].strip()


def load_embedder(model: Path, device: Any = None, pack_tokens: int | None = None) -> Embedder:
    """Load the model (imports the model stack only when needed)."""
    from cocoa.inference.embedder import Embedder

    return Embedder.from_pretrained(model, device=device, pack_tokens=pack_tokens)


def _run(action: Callable[[], T]) -> T:
    """Run ``action`` under the one CLI error handler."""
    return reports_errors(action)()


def write_embeddings(out: Path, ids: list[Any], vectors: Any) -> None:
    """Write ``.npy`` (vectors only) or ``.parquet`` (``id`` as text and ``embedding``), atomically."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if out.suffix == ".npy":
        write_npy(out, np.asarray(vectors))
        return
    table = pa.table({"id": [str(i) for i in ids],
                      "embedding": pa.array(list(vectors), type=pa.list_(pa.float32()))})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def encode(
    model: ModelOpt,
    input: Annotated[Path, typer.Option("--input", help="JSONL or parquet rows {id, text, image, video}, or a "
                                                       "folder of images.")],
    out: Annotated[Path, typer.Option("--out", help="A folder of shards (resumable; split across torchrun ranks), "
                                                   "or one .npy / .parquet file for a small input.")],
    batch_size: BatchOpt = ENCODE_BATCH_SIZE,
    instruction: InstructionOpt = None,
    dim: DimOpt = None,
    shard_size: Annotated[int, typer.Option(min=1, help="Rows per shard (folder output).")] = SHARD_SIZE,
    pack_tokens: PackTokensOpt = 0,
    allow_outside_paths: AllowOutsideOpt = False,
) -> None:
    """Embed every row of INPUT into OUT: a folder of parquet shards with a manifest, or one file."""
    console = make_console(stderr=True)
    if out.suffix in (".npy", ".parquet"):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise typer.BadParameter("one --out file is written by one process; under torchrun write to a folder")

        def to_file() -> int:
            from cocoa.inference.corpus_encoder import encode_rows

            rows = read_rows(input, allow_outside_paths)
            vectors = encode_rows(load_embedder(model, pack_tokens=pack_tokens), rows, instruction,
                                  batch_size=batch_size, show_progress=True, dim=dim)
            write_embeddings(out, [r.id for r in rows], vectors)
            return len(rows)

        console.print(f"wrote {_run(to_file)} embeddings to {out}")
        return

    def to_shards() -> tuple[int, EncodeResult]:
        from cocoa.core.distributed import rank_and_world, setup
        from cocoa.inference.corpus_encoder import encode_corpus

        corpus = Corpus(input, allow_outside_paths)
        embedder = load_embedder(model, setup().device, pack_tokens)
        result = encode_corpus(embedder, corpus, out, shard_size=shard_size, batch_size=batch_size,
                               instruction=instruction, dim=dim)
        return rank_and_world()[0], result

    rank, result = _run(to_shards)
    if rank == 0:
        console.print(f"wrote {result.rows} embeddings in {result.shards} shards to {out} (this rank: "
                      f"{result.written} encoded, {result.resumed} found finished)")


@index_app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", help="Index folder to write.")],
    shards: Annotated[Path | None, typer.Option("--shards", help="A shard folder from `cocoa encode` (streamed: "
                                                                 "memory is the index's, not the corpus's).")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="Model folder, to embed --input.")] = None,
    input: Annotated[Path | None, typer.Option("--input", help="JSONL or parquet rows, or a folder of images, "
                                                               "embedded in memory; the row is the payload.")] = None,
    kind: Annotated[str, typer.Option(help="flat (exact), hnsw, ivf or ivfpq (compressed).")] = "flat",
    nlist: Annotated[int | None, typer.Option(min=1, help="IVF lists (default: the square root of the count).")] = None,
    pq_m: Annotated[int | None, typer.Option(min=1, help="IVF-PQ code bytes per vector (default: width / 4).")] = None,
    nprobe: Annotated[int | None, typer.Option(min=1, help="IVF lists searched per query: recall against "
                                                            "speed (default 16).")] = None,
    ef_search: Annotated[int | None, typer.Option(min=1, help="HNSW search breadth: recall against speed "
                                                               "(default 64).")] = None,
    batch_size: BatchOpt = ENCODE_BATCH_SIZE,
    instruction: InstructionOpt = None,
    dim: DimOpt = None,
    allow_outside_paths: AllowOutsideOpt = False,
) -> None:
    """Save a searchable index of a shard folder, or of an input embedded now (queries are later embedded
    at its width)."""
    from cocoa.inference.index import EF_SEARCH, NPROBE, VectorIndex, build_from_shards
    from cocoa.inference.shards import ShardReader

    search = {"nprobe": nprobe or NPROBE, "ef_search": ef_search or EF_SEARCH}

    if (shards is None) == (input is None) or (input is not None and model is None):
        raise typer.BadParameter("give --shards DIR, or --input FILE with --model")

    def action() -> VectorIndex:
        if shards is not None:
            return build_from_shards(ShardReader(shards), out, kind=kind, nlist=nlist, pq_m=pq_m, **search)
        from cocoa.inference.corpus_encoder import encode_rows

        rows = read_rows(input, allow_outside_paths)
        embedder = load_embedder(model)
        vectors = encode_rows(embedder, rows, instruction, batch_size=batch_size, show_progress=True,
                              dim=dim)
        index = VectorIndex.build(vectors, [r.id for r in rows], [r.raw for r in rows], kind=kind,
                                  fingerprint=embedder.fingerprint, nlist=nlist, pq_m=pq_m, **search)
        index.save(out)
        return index

    index = _run(action)
    recall = "" if index.recall is None else f"; recall@10 against exact search {index.recall:.3f}"
    make_console(stderr=True).print(f"indexed {len(index)} rows ({kind}) in {out}{recall}")


@index_app.command("search")
def search(
    model: ModelOpt,
    index: Annotated[Path, typer.Option("--index", help="Index folder from `index build`.")],
    query: Annotated[str | None, typer.Option("--query", help="Query text.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Query image file.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of hits.")] = 5,
    instruction: InstructionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the top-k rows of an index for a text and/or image query."""
    from cocoa.inference.index import VectorIndex

    if query is None and image is None:
        raise typer.BadParameter("give --query and/or --image")

    def action() -> list[Any]:
        loaded = VectorIndex.load(index)
        embedder = load_embedder(model)
        loaded.check_model(embedder.fingerprint, embedder.dims)
        vectors = embedder.encode({"text": query or "", "image": image}, instruction, dim=loaded.dim)
        return loaded.search(vectors, k)[0]

    hits = _run(action)
    if as_json:
        typer.echo(json.dumps([{"id": h.id, "score": h.score, "payload": h.payload} for h in hits],
                              ensure_ascii=False))
        return
    table = Table("rank", "id", "score", "payload")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), str(hit.id), f"{hit.score:.4f}", json.dumps(hit.payload, ensure_ascii=False))
    make_console().print(table)


def serve(
    model: ModelOpt,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    index: Annotated[Path | None, typer.Option("--index", help="Index folder for /v1/search.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="COCOA_API_KEY",
                                                help="Require 'Authorization: Bearer KEY' (or set COCOA_API_KEY, or "
                                                     "--api-key-file, to keep it out of the process list).")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help="A file holding the API key (its first line).")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Most items per batched encode call.")] = DEFAULTS.max_batch,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for requests still being preprocessed "
                                                          "to join a batch.")] = DEFAULTS.max_wait_ms,
    preprocess_threads: Annotated[int, typer.Option(min=1, help="Threads that parse, tokenise and resize "
                                                               "requests while the model encodes.")] = DEFAULTS.preprocess_threads,
    pack_tokens: PackTokensOpt = SERVE_PACK_TOKENS,
    torch_threads: Annotated[int, typer.Option(min=0, help="Torch threads for the model (0: all but one, which "
                                                           "is left to the event loop and preprocessing).")] = 0,
) -> None:
    """Serve the model over HTTP (OpenAI-compatible /v1/embeddings and /v1/models, /v1/search, /health)."""
    from cocoa.inference.server import serve as run_server

    if api_key is None and "COCOA_API_KEY" in os.environ:  # the option reads an empty variable as unset
        api_key = os.environ["COCOA_API_KEY"]
    if api_key_file is not None:
        if api_key is not None:
            raise typer.BadParameter("give the API key once: --api-key (or COCOA_API_KEY) or --api-key-file")
        api_key = _run(lambda: read_key(api_key_file))

    _run(lambda: run_server(model, host, port, index, api_key, max_batch=max_batch, max_wait_ms=max_wait_ms,
                            preprocess_threads=preprocess_threads, pack_tokens=pack_tokens,
                            torch_threads=torch_threads or None))
