"""What a stored score depends on besides the model: the dataset's files and the images they name.

:class:`FileHashes` keeps each file's content hash with the size and modification time it was
hashed at (``data_hashes.json`` in the output folder), so a warm re-run only stats the files and
reads again just those whose size, times or inode changed; a file rewritten with the same bytes
keeps its hash. :func:`dataset_fingerprint` folds the hashes of a dataset's files and images into one
value that a score file records: a score whose data changed is not resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cocoa.core import files
from cocoa.core.defaults import FINGERPRINT_CHARS
from cocoa.data.items import VIDEO_KEY, EvalDataset, Item, VideoSource
from cocoa.data.videos import frame_files
from cocoa.data.visdoc import CorpusDataset

HASHES_FILE = "data_hashes.json"


class FileHashes:
    """Content hashes of files by absolute path, reused while a file's size, mtime, inode and ctime stay
    the same (a file replaced by another of the same size with its mtime restored has a new ctime or
    inode, so it is read again).

    A file is looked at (stat, and read if it changed) once per instance: the evaluator asks for the
    same image's hash several times while it keys the embedding cache.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._known: dict[str, list] = {}
        self._seen: dict[str, str] = {}
        self._changed = False
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._known = {k: v for k, v in loaded.items() if isinstance(v, list) and len(v) == 5}
        except (OSError, json.JSONDecodeError):
            pass

    def sha(self, file: str | Path) -> str:
        """The SHA-256 of ``file``'s bytes (hex)."""
        name = os.path.abspath(file)
        if name in self._seen:
            return self._seen[name]
        stat = os.stat(name)
        identity = [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]
        known = self._known.get(name)
        if known is None or known[:4] != identity:
            known = self._known[name] = [*identity, files.sha256_file(name)]
            self._changed = True
        self._seen[name] = str(known[4])
        return self._seen[name]

    def video_sha(self, video: VideoSource) -> str:
        """One hash of a video's content: its file's, or its frames' (names and bytes) in order."""
        if isinstance(video, str) and not Path(video).is_dir():
            return self.sha(video)
        frames = [Path(p) for p in video] if isinstance(video, tuple) else frame_files(video)
        digest = hashlib.sha256()
        for frame in frames:
            digest.update(f"{frame.name}\0{self.sha(frame)}\0".encode())
        return digest.hexdigest()

    def media_key(self, item: Item) -> str:
        """The media part of ``item``'s cache key: its image path and video with their content hashes."""
        parts = [f"{item.image}#{self.sha(item.image)[:FINGERPRINT_CHARS]}"] if isinstance(item.image, str) else []
        if item.video is not None:
            parts.append(f"video:{item.key()[1].split(VIDEO_KEY, 1)[1]}#{self.video_sha(item.video)[:FINGERPRINT_CHARS]}")
        return "|".join(parts)

    def save(self) -> None:
        """Write the hashes (atomically) if any was computed since loading."""
        if self._changed:
            files.write_json(self.path, self._known)
            self._changed = False


def dataset_files(dataset: EvalDataset | CorpusDataset) -> list[Path]:
    """The files a dataset was read from: the ones it lists, else every file under its source folder."""
    listed = getattr(dataset, "files", ())
    if listed:
        return sorted(Path(file) for file in listed)
    path = Path(dataset.source)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.is_file() else []


def dataset_fingerprint(dataset: EvalDataset | CorpusDataset, hashes: FileHashes, *, skip_bad: bool) -> str:
    """A hash of the content of the dataset's files and of every image its items name (in item order, by
    content, so a moved folder keeps it), and of how bad rows were treated."""
    digest = hashlib.sha256(f"skip_bad={skip_bad}".encode())
    for file in dataset_files(dataset):
        digest.update(f"{file.name}\0{hashes.sha(file)}\0".encode())
    for item in dataset.items:
        image = hashes.sha(item.image) if isinstance(item.image, str) else ""
        video = "" if item.video is None else f"\0{hashes.video_sha(item.video)}"
        digest.update(f"{image}{video}\0".encode())
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def file_record(dataset: EvalDataset | CorpusDataset, hashes: FileHashes) -> dict[str, str]:
    """The dataset's files with their content hashes, as a score file records them."""
    return {os.path.abspath(file): hashes.sha(file) for file in dataset_files(dataset)}


def stale_reason(record: dict, hashes: FileHashes) -> str | None:
    """Why a score file's dataset files no longer hold what it was scored on (``None``: unchanged), checked
    by their hashes (a stat each while unchanged); a score file from before this record is stale."""
    recorded = record.get("data_files")
    if not isinstance(recorded, dict):
        return "its score file records no data files (written by an older cocoa)"
    for name, sha in recorded.items():
        try:
            now = hashes.sha(name)
        except OSError:
            return f"{name} is gone"
        if now != sha:
            return f"{name} changed since it was scored"
    return None


def content_key(item: Item, hashes: FileHashes) -> tuple[str, str]:
    """The embedding-cache key of ``item``: its text and its image path with the image's content hash,
    so an image replaced at the same path is encoded again."""
    return item.text, hashes.media_key(item)
