"""Which files of a local Hugging Face dataset folder make a config's split, and their rows.

A dataset repository on the Hub says which files make which config and split in the ``configs:``
block of its README; without one, the ``datasets`` library infers splits from file and folder
names (``data/test-*.parquet``, ``msrvtt_test_1k.json``, ``train.jsonl``, ``<config>/<split>/``).
:func:`split_files` resolves both with ``datasets``' own functions (its card parser and its
pattern inference and resolution) on the local folder, a snapshot as ``snapshot_download`` or
``git clone`` leaves it: nothing is downloaded, converted or cached. A config with no block
entry is a folder of that name, resolved the same way inside it (``Subset/test-*.parquet``, the
Hub's parquet conversion ``<config>/<split>/0000.parquet``). The fallbacks: the conversion of the
default config, one file per config at the top (``queries.jsonl``), a folder with one row file.

Rows come from parquet (in batches), JSON Lines, or a JSON file holding a list of records (or an
object with one list of records), the three forms the MMEB-V2 annotations are published in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.core.errors import DataError

#: File suffixes that hold rows.
ROW_SUFFIXES = (".parquet", ".jsonl", ".json")
#: Rows read from a parquet file at a time.
ROW_BATCH = 256


def _card_configs(folder: Path) -> dict[str, dict] | None:
    """The ``configs:`` block of the folder's README as ``datasets`` reads it (``None``: no README or no block)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    try:
        configs = MetadataConfigs.from_dataset_card_data(DatasetCard.load(readme).data)
    except (ValueError, TypeError, OSError) as exc:  # a README whose YAML or configs block cannot be read
        raise DataError(f"cannot read the configs block of the dataset card: {exc}", file=str(readme)) from exc
    return dict(configs) or None


def _resolve(patterns: dict[str, list[str]], base: Path, split: str) -> list[Path]:
    from datasets.data_files import DataFilesDict, sanitize_patterns

    wanted = {name: files for name, files in sanitize_patterns(patterns).items() if str(name) == split}
    if not wanted:
        return []
    try:
        resolved = DataFilesDict.from_patterns(wanted, base_path=str(base), allowed_extensions=list(ROW_SUFFIXES))
    except FileNotFoundError:
        return []
    return sorted(Path(str(f)) for files in resolved.values() for f in files)


def _inferred(base: Path, split: str) -> list[Path]:
    """The split's row files by ``datasets``' inference from file and folder names."""
    from datasets.data_files import get_data_patterns

    try:
        patterns = get_data_patterns(str(base))
    except FileNotFoundError:  # datasets' EmptyDatasetError: no data file at all
        return []
    return _resolve(patterns, base, split)


def _datasets_files(folder: Path, config: str | None, split: str) -> list[Path]:
    """The files ``datasets`` resolves for ``config``/``split`` of ``folder`` (none: ``[]``), reading the
    README's ``configs:`` block when there is one and inferring from names otherwise; nothing is
    downloaded, converted or cached."""
    configs = _card_configs(folder)
    if configs is not None:
        if config is None and len(configs) > 1:
            config = next((name for name, entry in configs.items() if entry.get("default")), None)
            if config is None:
                raise DataError(f"the dataset card declares several configs ({', '.join(configs)}); "
                                "the task names none", file=str(folder / "README.md"))
        entry = configs.get(config) if config is not None else next(iter(configs.values()))
        if entry is not None and entry.get("data_files"):
            return _resolve(entry["data_files"], folder, split)
        if entry is not None:
            return []
    if config is not None:
        return _inferred(folder / config, split) if (folder / config).is_dir() else []
    return _inferred(folder, split)


def _fallback_files(folder: Path, config: str | None, split: str) -> list[Path]:
    """Files by the layouts ``datasets`` does not infer: the Hub's parquet conversion of the default
    config (``default/<split>/0000.parquet``), one file per config at the top (a visual-document part
    as ``corpus.parquet`` or ``queries.jsonl``), and a folder holding a single row file."""
    if config is None and (folder / "default").is_dir():
        return _inferred(folder / "default", split)
    if config is not None:
        return [file for suffix in ROW_SUFFIXES if (file := folder / f"{config}{suffix}").is_file()][:1]
    rows = [p for p in folder.iterdir() if p.is_file() and p.suffix in ROW_SUFFIXES] if folder.is_dir() else []
    return rows if len(rows) == 1 else []


def split_files(folder: Path, config: str | None, split: str) -> list[Path]:
    """The files of ``config`` (``None``: the only or default one) and ``split`` in a local dataset folder.

    Raises :class:`DataError` naming the folder, the config and split, and the row files near it.
    """
    folder = Path(folder)
    files = _datasets_files(folder, config, split) or _fallback_files(folder, config, split)
    if not files:
        nearby = [str(p.relative_to(folder)) for p in _row_files_near(folder)]
        raise DataError(f"no files of config {config or 'default'!r}, split {split!r} "
                        f"(row files here: {', '.join(nearby) or 'none'})", file=str(folder))
    return files


def _row_files_near(folder: Path, depth: int = 3, most: int = 8) -> list[Path]:
    """Up to ``most`` row files within ``depth`` levels of ``folder``, never walking a whole media tree."""
    found: list[Path] = []
    level = [folder]
    for _ in range(depth):
        below = []
        for base in level:
            try:
                entries = sorted(base.iterdir())[:1000]
            except OSError:
                continue
            found += [p for p in entries if p.suffix in ROW_SUFFIXES and p.is_file()]
            below += [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        if len(found) >= most:
            break
        level = below
    return found[:most]


def config_names(folder: Path) -> list[str]:
    """The configs a local dataset folder declares (its README), else its config folders."""
    configs = _card_configs(Path(folder))
    if configs:
        return [name for name in configs if name != "default"] or list(configs)
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.is_dir() and not p.name.startswith(".") and _row_files_near(p, depth=2, most=1))


def _json_records(file: Path) -> list[dict]:
    """A ``.json`` file's records, in the forms ``datasets``' JSON reader takes: a list of objects, an
    object holding one such list (``{"data": [...]}``), an object of equally long columns, or JSON Lines."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read JSON: {exc}", file=str(file)) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON Lines under a .json name
            return _jsonl_records(file)
        raise DataError(f"cannot read JSON: {exc}", file=str(file)) from exc
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]):
            data = lists[0]
        elif lists and len(lists) == len(data) and len({len(v) for v in lists}) == 1:
            data = [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError("expected a list of records (objects), an object of columns, or JSON Lines", file=str(file))
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
