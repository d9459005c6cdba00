"""Which files of a local Hugging Face dataset folder make a config's split, and their rows.

A dataset repository on the Hub says which files make which config and split in the ``configs:``
block of its README; without one, the ``datasets`` library infers splits from file and folder
names (``data/test-*.parquet``, ``msrvtt_test_1k.json``, ``train.jsonl``). :func:`split_files`
asks ``datasets`` for that resolution on the local folder (a snapshot as ``snapshot_download`` or
``git clone`` leaves it; nothing is downloaded or converted), and falls back to the layouts
``datasets`` does not infer from a bare folder: the Hub's parquet conversion
(``<config>/<split>/0000.parquet``) and a folder per config (``<config>/<split>-*.parquet``).

Rows come from parquet (in batches), JSON Lines, or a JSON file holding a list of records (or an
object with one list of records), the three forms the MMEB-V2 annotations are published in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.errors import DataError

#: File suffixes that hold rows.
ROW_SUFFIXES = (".parquet", ".jsonl", ".json")
#: Rows read from a parquet file at a time.
ROW_BATCH = 256
logger = logging.getLogger(__name__)


def _datasets_files(folder: Path, config: str | None, split: str) -> list[Path] | None:
    """The files ``datasets`` resolves for ``config``/``split`` of ``folder``; ``None`` when it resolves none."""
    try:
        from datasets import load_dataset_builder
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
        builder = load_dataset_builder(str(folder), name=config)
        files = (builder.config.data_files or {}).get(split)
    except Exception as exc:  # datasets raises many kinds for folders it cannot read; the fallbacks decide then
        logger.debug("datasets resolves no %s/%s in %s: %s", config, split, folder, exc)
        return None
    paths = [Path(str(f)) for f in files or ()]
    return [p for p in paths if p.suffix in ROW_SUFFIXES] or None


def _fallback_files(folder: Path, config: str | None, split: str) -> list[Path]:
    """Files by the layouts ``datasets`` does not infer from a bare folder."""
    bases = [folder / config] if config else []
    bases += [folder / "default"] if not config else []
    for base in bases:
        for pattern in (f"{split}/*.parquet", f"{split}-*.parquet", f"{split}.parquet", f"{split}.jsonl",
                        f"{split}.json"):
            if files := sorted(base.glob(pattern)):
                return files
    if config and (files := sorted(p for p in (folder / config).glob("*") if p.suffix in ROW_SUFFIXES)):
        return files
    if config:  # one file per config at the top (a visual-document part as corpus.parquet or queries.jsonl)
        return [file for suffix in ROW_SUFFIXES if (file := folder / f"{config}{suffix}").is_file()][:1]
    return []


def split_files(folder: Path, config: str | None, split: str) -> list[Path]:
    """The files of ``config`` (``None``: the only or default one) and ``split`` in a local dataset folder.

    Raises :class:`DataError` naming the folder, the config and split, and the row files it holds.
    """
    folder = Path(folder)
    files = _datasets_files(folder, config, split) or _fallback_files(folder, config, split)
    if not files:
        nearby = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                        if p.suffix in ROW_SUFFIXES and ".cache" not in p.parts)[:8]
        raise DataError(f"no files of config {config or 'default'!r}, split {split!r} "
                        f"(row files here: {', '.join(nearby) or 'none'})", file=str(folder))
    return files


def config_names(folder: Path) -> list[str]:
    """The configs a local dataset folder declares (its README), else its config folders."""
    try:
        from datasets import get_dataset_config_names

        names = [n for n in get_dataset_config_names(str(folder)) if n != "default"]
    except Exception as exc:  # as in _datasets_files
        logger.debug("datasets lists no configs of %s: %s", folder, exc)
        names = []
    return names or sorted(p.name for p in Path(folder).iterdir()
                           if p.is_dir() and not p.name.startswith(".") and any(p.rglob("*.parquet")))


def _json_records(file: Path) -> list[dict]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read JSON: {exc}", file=str(file)) from exc
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError("expected a list of records (objects)", file=str(file))
    return data


def _jsonl_records(file: Path) -> list[dict]:
    records = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read JSON Lines: {exc}", file=str(file)) from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc}", file=str(file), line=number) from exc
        if not isinstance(record, dict):
            raise DataError("a line is not an object", file=str(file), line=number)
        records.append(record)
    return records


def fields(file: Path) -> list[str]:
    """The field names of a row file (a JSON file's: those of its first record)."""
    if file.suffix == ".parquet":
        try:
            return pq.read_schema(file).names
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataError(f"cannot read parquet: {exc}", file=str(file)) from exc
    records = _jsonl_records(file) if file.suffix == ".jsonl" else _json_records(file)
    return list(records[0]) if records else []


def iter_rows(file: Path, columns: Sequence[str] | None = None) -> Iterator[dict]:
    """The rows of a parquet, JSON Lines or JSON file in order (parquet in batches of :data:`ROW_BATCH`)."""
    if file.suffix != ".parquet":
        yield from _jsonl_records(file) if file.suffix == ".jsonl" else _json_records(file)
        return
    index = 0
    try:
        parquet = pq.ParquetFile(file)
        wanted = None if columns is None else [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=ROW_BATCH, columns=wanted):
            for row in batch.to_pylist():
                yield row
                index += 1
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"cannot read parquet: {exc}", file=str(file), row=index) from exc


def count_rows(files: Sequence[Path]) -> int:
    """The number of rows of row files (parquet from its metadata)."""
    total = 0
    for file in files:
        if file.suffix == ".parquet":
            try:
                total += pq.ParquetFile(file).metadata.num_rows
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise DataError(f"cannot read parquet: {exc}", file=str(file)) from exc
        else:
            total += sum(1 for _ in iter_rows(file))
    return total
