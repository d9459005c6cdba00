"""Embeddings of a corpus in shards: the folder format, its manifest, and the checks that keep
a resumed run from mixing shards of two models, two inputs or two settings.

A shard folder holds::

    manifest.json          what the shards are (see below), written first and rewritten when done
    shard-00000.parquet    rows [0, shard_size) of the input
    shard-00001.parquet    rows [shard_size, 2 * shard_size), ...

Each shard is a parquet table with the columns ``id`` (text), ``payload`` (the input row as JSON
text) and ``embedding`` (``fixed_size_list<float32>[dim]``, L2-normalised), in input order; its
schema metadata repeats the model fingerprint and the shard's first row. A shard is written to
a temporary file and renamed, so a file that exists is whole. ``manifest.json`` records
``format``, ``fingerprint`` (the model), ``dim``, ``instruction``, ``shard_size``, ``input``
(path, kind, row count, and size and mtime for a file), ``shards`` (file, first row, rows, and the
SHA-256 taken when the shard was written, kept beside it in ``.shard-00000.parquet.sha256``, checked
again when the folder is complete and by :class:`ShardReader` before a shard is read; parquet page
checksums are written and verified too) and
``complete``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cocoa.core import files
from cocoa.core.errors import ConfigError, DataError

MANIFEST = "manifest.json"
FORMAT = 1
#: Keys of the parquet schema metadata.
FINGERPRINT_KEY, FIRST_ROW_KEY = b"cocoa.fingerprint", b"cocoa.first_row"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


@dataclass(frozen=True)
class ShardPlan:
    """What the shards of one run hold; a resumed run must have the same plan."""

    fingerprint: str
    dim: int
    shard_size: int
    input: dict[str, Any]
    instruction: str | None = None

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ConfigError(f"shard size must be positive, got {self.shard_size}")

    @property
    def rows(self) -> int:
        return int(self.input["rows"])

    @property
    def num_shards(self) -> int:
        return math.ceil(self.rows / self.shard_size)

    def first_row(self, shard: int) -> int:
        return shard * self.shard_size

    def shard_rows(self, shard: int) -> int:
        """Rows in ``shard`` (the last one may be short)."""
        return min(self.shard_size, self.rows - self.first_row(shard))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{key} {old.get(key)!r}, now {new.get(key)!r}" for key in new if old.get(key) != new.get(key)]


class ShardedOutput:
    """The shard folder of one :class:`ShardPlan`."""

    def __init__(self, folder: str | Path, plan: ShardPlan) -> None:
        self.folder, self.plan = Path(folder), plan

    def start(self) -> None:
        """Check that a folder already there holds shards of this same plan, else write its manifest.

        A :class:`ConfigError` says what differs (model, input, shard size, width or instruction).
        """
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"{self.folder} is a file, not a shard folder")
        manifest = self.folder / MANIFEST
        if manifest.is_file():
            old = read_manifest(self.folder)
            differs = _differences({k: old.get(k) for k in ("fingerprint", "dim", "shard_size", "instruction")},
                                   {k: v for k, v in asdict(self.plan).items() if k != "input"})
            differs += [f"input {d}" for d in _differences(old.get("input", {}), self.plan.input)]
            if differs:
                raise ConfigError(f"{self.folder} holds shards of another run ({'; '.join(differs)}); "
                                  "write to a new folder, or delete this one")
        elif self.folder.is_dir() and any(self.folder.glob("shard-*.parquet")):
            raise ConfigError(f"{self.folder} holds shards but no {MANIFEST}; write to a new folder")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            files.write_json(manifest, self._manifest(complete=False))

    def done(self, shard: int) -> bool:
        """Whether ``shard`` is written whole by this plan's model (a :class:`ConfigError` if by another; an
        unreadable file is not done, so it is written again)."""
        path = self.folder / shard_name(shard)
        if not path.is_file():
            return False
        try:
            meta = pq.read_schema(path).metadata or {}
            rows = pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException):  # cut short (a crash before the data reached the disk): write it again
            return False
        fingerprint = meta.get(FINGERPRINT_KEY, b"").decode()
        if fingerprint != self.plan.fingerprint:
            raise ConfigError(f"{path} was written by model {fingerprint or 'unknown'}, not {self.plan.fingerprint}; "
                              "write to a new folder")
        return rows == self.plan.shard_rows(shard)

    def write(self, shard: int, ids: Sequence[Any], payloads: Sequence[dict[str, Any]], vectors: np.ndarray) -> Path:
        """Write ``shard`` atomically."""
        rows = self.plan.shard_rows(shard)
        if not len(ids) == len(payloads) == len(vectors) == rows:
            raise ValueError(f"shard {shard} needs {rows} rows, got {len(ids)} ids, {len(payloads)} payloads "
                             f"and {len(vectors)} vectors")
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        table = pa.table({
            "id": pa.array([str(i) for i in ids], type=pa.string()),
            "payload": pa.array([json.dumps(p, ensure_ascii=False, default=str) for p in payloads], type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, self.plan.dim),
        }).replace_schema_metadata({FINGERPRINT_KEY: self.plan.fingerprint.encode(),
                                    FIRST_ROW_KEY: str(self.plan.first_row(shard)).encode()})
        path = self.folder / shard_name(shard)
        with files.atomic_path(path) as tmp:
            pq.write_table(table, tmp, write_page_checksum=True)
            digest = file_sha256(tmp)
        files.write_text(checksum_path(path), digest + "\n")
        return path

    def finish(self) -> dict[str, Any]:
        """Rewrite the manifest as complete once every shard is there; returns it."""
        missing = [k for k in range(self.plan.num_shards) if not self.done(k)]
        if missing:
            raise DataError(f"{len(missing)} shards are missing or short (first: {shard_name(missing[0])})",
                            file=str(self.folder))
        manifest = self._manifest(complete=True)
        for entry in manifest["shards"]:
            path = self.folder / entry["file"]
            found = file_sha256(path)
            written = checksum_path(path).read_text().strip() if checksum_path(path).is_file() else found
            if found != written:
                raise DataError("shard changed since it was written (its checksum differs from the one taken "
                                "then): delete it and rerun to encode it again", file=str(path))
            entry["sha256"] = written
        files.write_json(self.folder / MANIFEST, manifest)
        return manifest

    def _manifest(self, complete: bool) -> dict[str, Any]:
        shards = [{"file": shard_name(k), "first_row": self.plan.first_row(k), "rows": self.plan.shard_rows(k)}
                  for k in range(self.plan.num_shards)]
        return {"format": FORMAT, **asdict(self.plan), "shards": shards, "complete": complete}


def checksum_path(shard: Path) -> Path:
    """The hidden file beside a shard that holds the SHA-256 taken when it was written."""
    return shard.with_name(f".{shard.name}.sha256")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a shard's bytes (a missing or unreadable file names itself)."""
    try:
        return files.sha256_file(path)
    except OSError as exc:
        raise DataError(f"cannot read shard: {exc}", file=str(path)) from exc


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """``manifest.json`` of a shard folder, or a :class:`DataError` naming it."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"not a shard folder: {exc}", file=str(path)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"unknown shard manifest format {manifest.get('format') if isinstance(manifest, dict) else None}",
                        file=str(path))
    return manifest


@dataclass(frozen=True)
class Shard:
    """One shard as read back: ids, payloads (JSON text, parsed on demand) and ``(n, dim)`` vectors."""

    ids: list[str]
    payloads: list[str]
    vectors: np.ndarray


class ShardReader:
    """The shards of a complete folder, read one at a time (:meth:`__iter__`), each checked against
    the manifest's fingerprint, width and row count."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if not self.manifest.get("complete"):
            raise DataError("the shards are not complete (an encode run has not finished; rerun it to resume)",
                            file=str(self.folder / MANIFEST))
        self.fingerprint: str = self.manifest["fingerprint"]
        self.dim: int = int(self.manifest["dim"])
        self.rows: int = int(self.manifest["input"]["rows"])

    def __len__(self) -> int:
        return self.rows

    def __iter__(self) -> Iterator[Shard]:
        for entry in self.manifest["shards"]:
            path = self.folder / entry["file"]
            if "sha256" in entry and (found := file_sha256(path)) != entry["sha256"]:
                raise DataError(f"shard is corrupt: its checksum is {found[:16]}..., {MANIFEST} recorded "
                                f"{entry['sha256'][:16]}... (encode it again: delete the file and rerun `cocoa "
                                "encode`, which resumes)", file=str(path))
            try:
                table = pq.read_table(path, page_checksum_verification=True)
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"cannot read shard: {exc}", file=str(path)) from exc
            fingerprint = (table.schema.metadata or {}).get(FINGERPRINT_KEY, b"").decode()
            if fingerprint != self.fingerprint or table.num_rows != entry["rows"]:
                raise DataError(f"shard disagrees with {MANIFEST} (model {fingerprint}, {table.num_rows} rows; "
                                f"expected {self.fingerprint}, {entry['rows']})", file=str(path))
            vectors = table.column("embedding").combine_chunks().values.to_numpy().reshape(-1, self.dim)
            yield Shard(table.column("id").to_pylist(), table.column("payload").to_pylist(), vectors)
