"""On-disk embedding cache: one folder per encoder fingerprint, shards of ``.npy`` + key lists."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cocoa.core import files

Key = tuple[str, str]
#: Longest fingerprint used as a cache folder name as it is; longer or unsafe ones are hashed.
MAX_FOLDER_NAME = 80


def _folder_name(fingerprint: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", fingerprint)
    if safe == fingerprint and 0 < len(safe) <= MAX_FOLDER_NAME:
        return safe
    return hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:MAX_FOLDER_NAME // 2]


class EmbeddingCache:
    """Embeddings of items (by :meth:`Item.key`) for one encoder fingerprint.

    Each :meth:`add` writes a shard: ``<tag>-<id>.npy`` then ``<tag>-<id>.keys.json``; the
    key list is written last, so a shard without one (an interrupted write) is ignored. A cache
    that does not ``persist`` (every rank but the first of a process group) reads the shards on
    disk and keeps what it adds in memory only.
    """

    def __init__(self, root: Path, fingerprint: str, *, persist: bool = True) -> None:
        self.folder = Path(root) / _folder_name(fingerprint)
        self.persist = persist
        self._index: dict[Key, tuple[Path, int]] = {}
        self._arrays: dict[Path, np.ndarray] = {}
        for keys_file in sorted(self.folder.glob("*.keys.json")):
            shard = keys_file.with_name(keys_file.name.removesuffix(".keys.json") + ".npy")
            if shard.is_file():
                keys = json.loads(keys_file.read_text(encoding="utf-8"))
                self._index.update({(text, image): (shard, row) for row, (text, image) in enumerate(keys)})
        if persist and not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            files.write_text(self.folder / "fingerprint.txt", fingerprint + "\n")

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: Key) -> bool:
        return key in self._index

    def _array(self, shard: Path) -> np.ndarray:
        if shard not in self._arrays:
            self._arrays[shard] = np.load(shard, mmap_mode="r", allow_pickle=False)
        return self._arrays[shard]

    def get(self, keys: Sequence[Key]) -> np.ndarray:
        """Embeddings of ``keys`` (all must be cached), one row each, in order."""
        rows = [self._array(shard)[row] for shard, row in (self._index[key] for key in keys)]
        return np.asarray(rows, dtype=np.float32)

    def add(self, tag: str, keys: Sequence[Key], embeddings: np.ndarray) -> None:
        """Store ``embeddings`` (one row per key) as a new shard named after ``tag``."""
        if len(keys) != len(embeddings):
            raise ValueError(f"{len(keys)} keys but {len(embeddings)} embeddings")
        if not keys:
            return
        stem = f"{re.sub(r'[^A-Za-z0-9._-]', '_', tag)}-{uuid.uuid4().hex[:8]}"
        shard = self.folder / f"{stem}.npy"
        array = np.ascontiguousarray(embeddings, dtype=np.float32)
        if self.persist:
            files.write_npy(shard, array)
            files.write_json(self.folder / f"{stem}.keys.json", [list(key) for key in keys])
        self._arrays[shard] = array
        self._index.update({key: (shard, row) for row, key in enumerate(keys)})
