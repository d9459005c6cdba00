"""``cocoa data get``: download MMEB-train, MMEB-eval (V1) or MMEB-V2, unpack their media, check them.

Repository ids, archive names and where each archive unpacks follow VLM2Vec's own download
script (``experiments/public/data/download_data.sh`` in TIGER-AI-Lab/VLM2Vec) and the datasets'
Hub pages:

- ``mmeb-train``: ``TIGER-Lab/MMEB-train``, one parquet folder per subset and the images as
  ``images_zip/<Subset>.zip``, unpacked into ``images/``;
- ``mmeb-eval``: ``TIGER-Lab/MMEB-eval`` (MMEB-V1's 36 datasets) and ``images.zip``, unpacked
  into ``images/``;
- ``mmeb-v2`` (or one modality: ``mmeb-v2-image``, ``mmeb-v2-video``, ``mmeb-v2-visdoc``): the 78
  tasks as VLM2Vec-V2 reads them, into the layout of its ``data/vlm2vec_eval`` folder:

  * ``TIGER-Lab/MMEB-V2`` into ``--out``: ``image-tasks/mmeb_v1.tar.gz`` (its ``MMEB/`` folder
    moved up into ``image-tasks/``) and the frame archives under ``video-tasks/frames/``:
    ``video_cls`` and ``video_ret`` unpacked into folders of those names, ``video_mret`` in place,
    and ``video_qa`` from five parts (``video_qa.tar.gz-00`` ... ``-04``) read as one stream;
    ``visdoc-tasks/visdoc-tasks.*`` archives, when a clone holds them, into ``visdoc-tasks/``;
  * the image tasks' test files (``ziyjiang/MMEB_Test_Instruct``, one config per task) into
    ``image-tasks/MMEB_Test_Instruct/``;
  * each video task's annotation repo into ``video-tasks/<task>/`` and each visual-document
    task's repo into ``visdoc-tasks/<task>/`` (:data:`cocoa.data.mmeb_v2.PUBLISHED`), row files
    and README only (no raw videos), skipped for a task already found.

  The report then says, task by task, what the readers find (:mod:`cocoa.data.check`).

Each download is ``huggingface_hub.snapshot_download`` into its folder with ``allow_patterns``
(resumable, with its progress bars, its cache rules and ``HF_HUB_OFFLINE``). Unpacking is skipped
for an archive already unpacked (a marker file records it), so a rerun resumes. After unpacking,
every media path the parquet files name is checked (images, videos, and those inside ``extra_negatives``).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cocoa.core.errors import ConfigError, DataError
from cocoa.data.check import TaskCheck, check_published
from cocoa.data.mmeb_v2 import PUBLISHED
from cocoa.data.train_pairs import EXTRA_NEGATIVES

#: Columns of MMEB parquet files that name media files, relative to the image root (``extra_negatives``:
#: a list of objects whose ``*_path`` keys do).
MEDIA_COLUMNS = ("qry_image_path", "pos_image_path", "neg_image_path", "qry_video_path", "pos_video_path",
                 "neg_video_path", EXTRA_NEGATIVES, "qry_img_path", "tgt_img_path")
MARKER_SUFFIX = ".cocoa-unpacked"


@dataclass(frozen=True)
class Archive:
    """Archive files matching ``pattern`` (a glob under the snapshot), unpacked into ``into``
    (relative to the snapshot); ``parts``: the pattern names the pieces of one archive, in order."""

    pattern: str
    into: str
    parts: bool = False
    lift: str | None = None
    """A folder inside ``into`` whose contents move up into ``into`` after unpacking."""


@dataclass(frozen=True)
class Source:
    repo_id: str
    archives: tuple[Archive, ...]
    image_roots: tuple[str, ...]
    """Folders, relative to the snapshot, that parquet media paths resolve against (first match)."""
    description: str


SOURCES: dict[str, Source] = {
    "mmeb-train": Source("TIGER-Lab/MMEB-train", (Archive("images_zip/*.zip", "images"),), ("images",),
                         "MMEB-train: 20 image subsets for stage 3"),
    "mmeb-eval": Source("TIGER-Lab/MMEB-eval", (Archive("images.zip", "images"),), ("images",),
                        "MMEB-eval: MMEB-V1's 36 image datasets"),
}
V2_REPO = "TIGER-Lab/MMEB-V2"
#: The archives of TIGER-Lab/MMEB-V2 by the modality they serve, unpacked as ``download_data.sh`` does.
V2_ARCHIVES: dict[str, tuple[Archive, ...]] = {
    "image": (Archive("image-tasks/mmeb_v1.tar.gz", "image-tasks", lift="MMEB"),),
    "video": (Archive("video-tasks/frames/video_cls.tar.gz", "video-tasks/frames/video_cls"),
              Archive("video-tasks/frames/video_mret.tar.gz", "video-tasks/frames"),
              Archive("video-tasks/frames/video_ret.tar.gz", "video-tasks/frames/video_ret"),
              Archive("video-tasks/frames/video_qa.tar.gz-0*", "video-tasks/frames", parts=True)),
    "visdoc": (Archive("visdoc-tasks/visdoc-tasks.data.tar.gz", "visdoc-tasks"),
               Archive("visdoc-tasks/visdoc-tasks.images.tar.gz", "visdoc-tasks"),
               Archive("visdoc-tasks/visdoc-tasks.tar.gz-0*", "visdoc-tasks", parts=True)),
}
#: Files of TIGER-Lab/MMEB-V2 fetched per modality (the visual-document archives are unpacked when
#: present, but each task's repo is fetched instead: the source VLM2Vec-V2's loaders read).
V2_PATTERNS = {"image": ("image-tasks/mmeb_v1.tar.gz",), "video": ("video-tasks/frames/*",), "visdoc": ()}
#: What an annotation repo contributes: its row files and README, never media.
ROW_PATTERNS = ("README.md", "*.parquet", "*.json", "*.jsonl")
RAW_PATTERNS = ("raw_data/*", "raw_videos/*", "video/*", "videos/*")
V2_NAMES = {"mmeb-v2": ("image", "video", "visdoc"), "mmeb-v2-image": ("image",), "mmeb-v2-video": ("video",),
            "mmeb-v2-visdoc": ("visdoc",)}

Downloader = Callable[..., str]


@dataclass(frozen=True)
class Fetched:
    """One snapshot download: the repo, the folder it went to, the task it serves, what it brought."""

    repo_id: str
    folder: Path
    task: str | None
    files: int


@dataclass
class GetReport:
    """What ``get`` fetched and found (``fetched`` and ``tasks`` for MMEB-V2)."""

    name: str
    repo_id: str
    revision: str | None
    folder: Path
    fetched: list[Fetched] = field(default_factory=list)
    tasks: list[TaskCheck] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    archives_unpacked: int = 0
    archives_skipped: int = 0
    parquet_files: int = 0
    media_checked: int = 0
    media_missing: int = 0
    first_missing: str | None = None


class _Parts(io.RawIOBase):
    """Several files read as one stream (an archive split into parts)."""

    def __init__(self, files: list[Path]) -> None:
        self._files: Iterator[Path] = iter(files)
        self._current = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        while True:
            if self._current is None:
                path = next(self._files, None)
                if path is None:
                    return 0
                self._current = path.open("rb")
            n = self._current.readinto(buffer)
            if n:
                return n
            self._current.close()
            self._current = None


def _unpack(archive: Archive, root: Path, report: GetReport) -> None:
    files = sorted(root.glob(archive.pattern))
    groups = [files] if archive.parts and files else [[f] for f in files]
    target = root / archive.into
    for group in groups:
        marker = group[0].with_name(group[0].name + MARKER_SUFFIX)
        if marker.is_file():
            report.archives_skipped += 1
            continue
        target.mkdir(parents=True, exist_ok=True)
        try:
            if group[0].suffix == ".zip":
                with zipfile.ZipFile(group[0]) as z:
                    z.extractall(target)
            else:
                stream = io.BufferedReader(_Parts(group), buffer_size=1 << 20)
                with tarfile.open(fileobj=stream, mode="r|gz") as tar:
                    tar.extractall(target, filter="data")
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise DataError(f"cannot unpack: {exc}", file=str(group[0])) from exc
        if archive.lift and (target / archive.lift).is_dir():
            for child in (target / archive.lift).iterdir():
                destination = target / child.name
                if destination.exists():
                    shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
                child.rename(destination)
            (target / archive.lift).rmdir()
        marker.write_text("unpacked\n")
        report.archives_unpacked += 1


def _media_paths(value: object) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _media_paths(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("_path"):
                yield from _media_paths(item)


def check_media(root: Path, image_roots: tuple[str, ...], report: GetReport) -> None:
    """Count the media paths the parquet files under ``root`` name and those that exist."""
    import pyarrow.parquet as pq

    bases = [root / r for r in image_roots if (root / r).is_dir()] or [root]
    for file in sorted(root.rglob("*.parquet")):
        if ".cache" in file.parts:
            continue
        report.parquet_files += 1
        schema = pq.read_schema(file)
        columns = [c for c in MEDIA_COLUMNS if c in schema.names]
        if not columns:
            continue
        table = pq.read_table(file, columns=columns).to_pydict()
        for column in columns:
            for value in table[column]:
                for rel in _media_paths(value):
                    report.media_checked += 1
                    if not any((base / rel).exists() for base in bases):
                        report.media_missing += 1
                        report.first_missing = report.first_missing or f"{file.relative_to(root)}: {rel}"


def _commit(folder: Path) -> str | None:
    """The commit ``snapshot_download`` recorded for a file of ``folder`` (``local_dir`` metadata)."""
    for meta in sorted((folder / ".cache" / "huggingface" / "download").rglob("*.metadata")):
        first = meta.read_text(encoding="utf-8").splitlines()[:1]
        if first:
            return first[0].strip()
    return None


def _count(folder: Path, report: GetReport) -> None:
    for file in folder.rglob("*"):
        if file.is_file() and ".cache" not in file.relative_to(folder).parts:
            report.files += 1
            report.bytes += file.stat().st_size


def get(name: str, out: Path, *, revision: str | None = None, download: Downloader | None = None) -> GetReport:
    """Download ``name`` into ``out``, unpack its archives and check its media; returns what it found."""
    if name in V2_NAMES:
        return get_v2(name, out, revision=revision, download=download)
    if name not in SOURCES:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join([*SOURCES, *V2_NAMES])}")
    source = SOURCES[name]
    if download is None:
        from huggingface_hub import snapshot_download as download
    out = Path(out)
    with _removed_if_nothing_came(out):
        _download(download, source.repo_id, out, revision=revision)
    report = GetReport(name, source.repo_id, _commit(out) or revision, out)
    for archive in source.archives:
        _unpack(archive, out, report)
    _count(out, report)
    check_media(out, source.image_roots, report)
    return report


def get_v2(name: str, out: Path, *, revision: str | None = None, download: Downloader | None = None) -> GetReport:
    """``mmeb-v2`` or one of its modalities (module docstring): fetch, unpack, then check every task.

    Every repo is asked for again on a rerun: ``snapshot_download`` fetches only what is missing or
    changed, so an interrupted download resumes and a finished one costs a listing.
    """
    if download is None:
        from huggingface_hub import snapshot_download as download
    out = Path(out)
    modalities = V2_NAMES[name]
    report = GetReport(name, V2_REPO, revision, out)
    patterns = ("README.md", *(p for m in modalities for p in V2_PATTERNS[m]))
    with _removed_if_nothing_came(out):
        _fetch(download, report, V2_REPO, out, None, allow_patterns=list(patterns), revision=revision)
    report.revision = _commit(out) or revision
    for modality in modalities:
        for archive in V2_ARCHIVES[modality]:
            _unpack(archive, out, report)
    if "image" in modalities:
        repo = PUBLISHED["ImageNet-1K"]
        _fetch(download, report, repo.repo, out / "image-tasks" / repo.repo_name, None,
               allow_patterns=list(ROW_PATTERNS))
    for task in PUBLISHED.values():
        if task.modality != "image" and task.modality in modalities:
            _fetch(download, report, task.repo, out / f"{task.modality}-tasks" / task.name, task.name,
                   allow_patterns=list(ROW_PATTERNS), ignore_patterns=list(RAW_PATTERNS))
    wanted = [t.name for t in PUBLISHED.values() if t.modality in modalities]
    report.tasks = check_published(out, names=wanted)
    return report


@contextlib.contextmanager
def _removed_if_nothing_came(out: Path) -> Iterator[None]:
    """Create ``out`` for a first download; if that download fails and ``out`` was created here and holds
    no file but the Hub client's own ``.cache``, remove it again (a failed first ``get`` leaves nothing)."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created and not any(f.is_file() and ".cache" not in f.relative_to(out).parts for f in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _download(download: Downloader, repo_id: str, folder: Path, **options: object) -> None:
    """``snapshot_download`` of ``repo_id`` into ``folder``; its failures as one :class:`DataError`."""
    try:
        download(repo_id=repo_id, repo_type="dataset", local_dir=str(folder), **options)
    except Exception as exc:  # huggingface_hub's offline, network, auth and not-found errors alike
        raise DataError(f"cannot download {repo_id} ({type(exc).__name__}: {exc}); what was fetched so far stays "
                        "and a rerun resumes", file=str(folder)) from exc


def _fetch(download: Downloader, report: GetReport, repo_id: str, folder: Path, task: str | None,
           **options: object) -> None:
    """One download into ``folder``, recorded in ``report`` with the files it brought (the download's
    own files in the top folder, not what its archives unpacked)."""
    _download(download, repo_id, folder, **options)
    patterns = tuple(options["allow_patterns"]) if folder == report.folder else ("**/*",)  # type: ignore[arg-type]
    files = {f for pattern in patterns for f in folder.glob(pattern)
             if f.is_file() and ".cache" not in f.relative_to(folder).parts}
    report.files += len(files)
    report.bytes += sum(f.stat().st_size for f in files)
    report.fetched.append(Fetched(repo_id, folder, task, len(files)))
