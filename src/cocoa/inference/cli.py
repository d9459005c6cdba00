"""``cocoa encode``, ``cocoa index build|search`` and ``cocoa serve``.

Input files are JSONL, one ``{"id": ..., "text": ..., "image": "path"}`` object per line;
``id`` defaults to the line number, image paths may be relative to the file's folder, and
each row needs a text or an image.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from cocoa.cli_errors import reports_errors
from cocoa.core.defaults import ENCODE_BATCH_SIZE
from cocoa.data.images import image_file_problem
from cocoa.data.items import EMPTY_ITEM, is_empty, text_problem
from cocoa.data.videos import video_problem
from cocoa.errors import DataError
from cocoa.files import atomic_path, write_npy
from cocoa.inference.settings import DEFAULTS

if TYPE_CHECKING:
    from cocoa.inference.embedder import Embedder

T = TypeVar("T")
ModelOpt = Annotated[Path, typer.Option("--model", help="Model folder (Embedder.from_pretrained).")]
InstructionOpt = Annotated[str | None, typer.Option(help="Instruction prepended to every input.")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Encoder batch size.")]
DimensionsOpt = Annotated[int | None, typer.Option(
    min=1, help="Embedding width: one the model was trained for (Matryoshka) or the full one (default).")]

index_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Build a vector index from a JSONL file, or search one.")


@dataclass(frozen=True)
class Row:
    """One JSONL input row."""

    id: Any
    text: str
    image: str | None
    video: str | list[str] | None
    raw: dict[str, Any]

    def as_input(self) -> dict[str, Any]:
        return {"text": self.text, "image": self.image, "video": self.video}


def read_rows(path: Path) -> list[Row]:
    """The rows of a JSONL file, or a :class:`DataError` naming the line and field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read input: {exc}", file=str(path)) from exc
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", file=str(path), line=number) from exc
        if not isinstance(raw, dict):
            raise DataError("row must be a JSON object", file=str(path), line=number)
        text, image = raw.get("text") or "", raw.get("image")
        if not isinstance(text, str):
            raise DataError("must be a string", file=str(path), line=number, field="text")
        if problem := text_problem(text):
            raise DataError(problem, file=str(path), line=number, field="text")
        if image is not None:
            if not isinstance(image, str) or not image:
                raise DataError("must be a path string", file=str(path), line=number, field="image")
            image = str((path.parent / image).resolve())
            if problem := image_file_problem(image):
                raise DataError(problem, file=str(path), line=number, field="image")
        video = raw.get("video")
        if video is not None:
            if isinstance(video, str) and video:
                video = str((path.parent / video).resolve())
            elif isinstance(video, list) and video and all(isinstance(v, str) and v for v in video):
                video = [str((path.parent / v).resolve()) for v in video]
            else:
                raise DataError("must be a frame folder or video file path, or a list of frame paths",
                                file=str(path), line=number, field="video")
            if problem := video_problem(video if isinstance(video, str) else tuple(video)):
                raise DataError(problem, file=str(path), line=number, field="video")
        if is_empty(text, image, video):
            others = sorted(set(raw) - {"id", "text", "image", "video"})
            hint = f"; its keys {others} are kept as payload, not embedded" if others else ""
            raise DataError(f"row has {EMPTY_ITEM} (expected 'text', 'image' and/or 'video'{hint})", file=str(path),
                            line=number, field="text")
        rows.append(Row(raw.get("id", number), text, image, video, raw))
    if not rows:
        raise DataError("input has no rows", file=str(path))
    return rows


def read_key(path: Path) -> str:
    """The API key on the first line of ``path``, or a :class:`DataError` naming the file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the API key: {exc}", file=str(path)) from exc
    if not lines or not lines[0].strip():
        raise DataError("the API key file is empty", file=str(path))
    return lines[0].strip()


def load_embedder(model: Path) -> Embedder:
    """Load the model (imports the model stack only when needed)."""
    from cocoa.inference.embedder import Embedder

    return Embedder.from_pretrained(model)


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
    input: Annotated[Path, typer.Option("--input", help="JSONL rows {id, text, image}.")],
    out: Annotated[Path, typer.Option("--out", help="Output .npy or .parquet file.")],
    batch_size: BatchOpt = ENCODE_BATCH_SIZE,
    instruction: InstructionOpt = None,
    dimensions: DimensionsOpt = None,
) -> None:
    """Embed every row of a JSONL file into OUT (.npy, or .parquet with ids)."""
    if out.suffix not in (".npy", ".parquet"):
        raise typer.BadParameter("--out must end in .npy or .parquet")

    def action() -> int:
        rows = read_rows(input)
        vectors = load_embedder(model).encode([r.as_input() for r in rows], instruction, batch_size=batch_size,
                                              show_progress=True, dimensions=dimensions)
        write_embeddings(out, [r.id for r in rows], vectors)
        return len(rows)

    count = _run(action)
    Console(stderr=True).print(f"wrote {count} embeddings to {out}")


@index_app.command("build")
def build(
    model: ModelOpt,
    input: Annotated[Path, typer.Option("--input", help="JSONL rows {id, text, image}; the row is the payload.")],
    out: Annotated[Path, typer.Option("--out", help="Index folder to write.")],
    kind: Annotated[str, typer.Option(help="flat (exact), hnsw or ivf.")] = "flat",
    batch_size: BatchOpt = ENCODE_BATCH_SIZE,
    instruction: InstructionOpt = None,
    dimensions: DimensionsOpt = None,
) -> None:
    """Embed a JSONL file and save a searchable index of it (queries are later embedded at its width)."""
    from cocoa.inference.index import VectorIndex

    def action() -> int:
        rows = read_rows(input)
        embedder = load_embedder(model)
        vectors = embedder.encode([r.as_input() for r in rows], instruction, batch_size=batch_size,
                                  show_progress=True, dimensions=dimensions)
        index = VectorIndex.build(vectors, [r.id for r in rows], [r.raw for r in rows], kind=kind,
                                  fingerprint=embedder.fingerprint)
        index.save(out)
        return len(index)

    count = _run(action)
    Console(stderr=True).print(f"indexed {count} rows ({kind}) in {out}")


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
        loaded.check_model(embedder.fingerprint, embedder.widths)
        vectors = embedder.encode({"text": query or "", "image": image}, instruction, dimensions=loaded.dim)
        return loaded.search(vectors, k)[0]

    hits = _run(action)
    if as_json:
        typer.echo(json.dumps([{"id": h.id, "score": h.score, "payload": h.payload} for h in hits],
                              ensure_ascii=False))
        return
    table = Table("rank", "id", "score", "payload")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), str(hit.id), f"{hit.score:.4f}", json.dumps(hit.payload, ensure_ascii=False))
    Console().print(table)


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
    pack_tokens: Annotated[int, typer.Option(min=0, help="Tokens per packed row: a batch's sequences share rows "
                                                         "so no compute goes to padding (0: pad instead).")] = DEFAULTS.pack_tokens,
    torch_threads: Annotated[int, typer.Option(min=0, help="Torch threads for the model (0: all but one, which "
                                                           "is left to the event loop and preprocessing).")] = 0,
) -> None:
    """Serve the model over HTTP (OpenAI-compatible /v1/embeddings and /v1/models, /v1/search, /health)."""
    from cocoa.inference.server import serve as run_server

    if api_key_file is not None:
        if api_key is not None:
            raise typer.BadParameter("give the API key once: --api-key (or COCOA_API_KEY) or --api-key-file")
        api_key = _run(lambda: read_key(api_key_file))

    _run(lambda: run_server(model, host, port, index, api_key, max_batch=max_batch, max_wait_ms=max_wait_ms,
                            preprocess_threads=preprocess_threads, pack_tokens=pack_tokens or None,
                            torch_threads=torch_threads or None))
