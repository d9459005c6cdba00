"""VLM2Vec-V2's video training sets (LLaVA-Hound, ``ShareGPTVideo/train_video_and_instruction``) as
MMEB-train rows with videos, so that stage 3 (and stage 2) train on them like on any subset.

Each JSONL row has ``id``, ``video`` (a folder name under the frame root, ``train_300k/`` in the
release) and ``conversations`` (a human turn with ``<video>``, then the answer). The three sets of
``experiments/public/train/train_video.yaml`` (``src/data/dataset/llavahound_dataset_*.py`` of
github.com/TIGER-AI-Lab/VLM2Vec):

* ``caption``: the human turn (``<video>`` becomes the video) -> the caption;
* ``retrieval``: ``"Find a video that contains the following visual content: "`` + caption ->
  ``"Understand the content of the provided video: "`` + the video (placed last, as there);
* ``qa``: ``"Answer a question based on the content of a video. "`` + the human turn -> the answer.

Rows whose frame folder is missing or empty are skipped and counted, as the reference skips
them; other bad rows are errors naming the line, or skipped with ``skip_bad``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.core.errors import DataError
from cocoa.core.files import write_bytes
from cocoa.data.items import VIDEO_PLACEHOLDER
from cocoa.data.rows import skip_row
from cocoa.data.videos import video_problem

MODES = ("caption", "retrieval", "qa")
RETRIEVAL_QUERY = "Find a video that contains the following visual content: "
RETRIEVAL_TARGET = "Understand the content of the provided video: "
QA_QUERY = "Answer a question based on the content of a video. "
#: MMEB-train columns with a video per side (no hard negatives: the release has none).
SCHEMA = pa.schema([("qry", pa.string()), ("qry_image_path", pa.string()), ("qry_video_path", pa.string()),
                    ("pos_text", pa.string()), ("pos_image_path", pa.string()), ("pos_video_path", pa.string())])


def convert(jsonl: Path, frames: Path, mode: str, *, limit: int | None = None,
            skip_bad: bool = False) -> tuple[dict[str, list[str]], int]:
    """The rows of one set as MMEB-train columns, and how many rows had no frames (skipped)."""
    if mode not in MODES:
        raise DataError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    columns: dict[str, list[str]] = {name: [] for name in SCHEMA.names}
    missing = 0
    try:
        lines = Path(jsonl).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read: {exc}", file=str(jsonl)) from exc
    for number, line in enumerate(lines, start=1):
        if limit is not None and len(columns["qry"]) >= limit:
            break
        if not line.strip():
            continue
        try:
            query, target, video = _row(line, str(jsonl), number, mode)
        except DataError as exc:
            skip_row(exc, skip_bad)
            continue
        folder = str(Path(frames) / video)
        if video_problem(folder) is not None:
            missing += 1
            continue
        video_side = "pos_video_path" if mode == "retrieval" else "qry_video_path"
        values = {"qry": query, "pos_text": target, video_side: folder}
        for name in SCHEMA.names:
            columns[name].append(values.get(name, ""))
    return columns, missing


def _row(line: str, file: str, number: int, mode: str) -> tuple[str, str, str]:
    """``(query text, target text, video id)`` of one JSONL line."""
    try:
        row = json.loads(line)
        human, answer = row["conversations"][0]["value"], row["conversations"][1]["value"]
        video = row["video"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise DataError(f"not a LLaVA-Hound row (id, video, conversations): {exc!r}", file=file, line=number) from exc
    if not all(isinstance(v, str) and v for v in (human, answer, video)):
        raise DataError("video and both turns must be non-empty strings", file=file, line=number)
    if mode == "retrieval":
        return RETRIEVAL_QUERY + answer, f"{RETRIEVAL_TARGET}{VIDEO_PLACEHOLDER}", video
    query = human.replace("<video>", VIDEO_PLACEHOLDER)
    return (QA_QUERY + query if mode == "qa" else query), answer, video


def write(columns: dict[str, list[str]], out: Path) -> Path:
    """Write the rows as a parquet file (atomically)."""
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=SCHEMA), buffer)
    write_bytes(Path(out), buffer.getvalue())
    return Path(out)
