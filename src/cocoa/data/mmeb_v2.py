"""Where each of the 78 MMEB-V2 tasks is published, and where a local copy of it is found.

One table, :data:`PUBLISHED`, says for every task the Hugging Face dataset repository its
annotations come from, the config and split VLM2Vec-V2 reads, and the folder names a local copy
may carry. Sources (github.com/TIGER-AI-Lab/VLM2Vec at 6e1e1d4):

* image tasks: ``DATASET_HF_PATH = "ziyjiang/MMEB_Test_Instruct"`` with the task as config and
  split ``test`` in every ``src/data/eval_dataset/image_*`` loader; images under ``image-tasks/``
  (``experiments/public/eval/image.yaml``), where ``download_data.sh`` unpacks ``mmeb_v1.tar.gz``;
* video tasks: ``src/constant/dataset_hf_path.py`` (repo, config, split) and
  ``experiments/public/eval/video.yaml`` (``dataset_name`` and ``frame_root``);
* visual documents: ``src/constant/dataset_hf_path.py`` (``corpus`` / ``queries`` / ``qrels``
  configs of each repo) and ``experiments/public/eval/visdoc.yaml`` (``image_root`` folder names);
  VLM2Vec's local layout names a folder after its repo (``src/constant/dataset_hflocal_path.py``).

A local copy of a task is a folder named after the task, its repo, or one of its other names,
directly in the data folder or in one of :data:`CONTAINERS` (``image-tasks/``, ``video-tasks/``,
``visdoc-tasks/``, their ``data/`` folders, ``eval/``); a repo folder holding several configs
(``MMEB_Test_Instruct/<task>/``) serves each of its tasks. Which files make the config and split
is decided by :func:`cocoa.data.hub_files.split_files`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from cocoa.core.errors import DataError
from cocoa.data.hub_files import config_names, split_files

IMAGE_REPO = "ziyjiang/MMEB_Test_Instruct"
#: Folders, relative to the data folder, that hold task folders.
CONTAINERS = ("", "image-tasks", "video-tasks", "visdoc-tasks", "video-tasks/data", "visdoc-tasks/data", "eval")
#: The parts of a visual-document task, each a config of its repo.
VISDOC_PARTS = ("corpus", "queries", "qrels")


@dataclass(frozen=True)
class PublishedTask:
    """One MMEB-V2 task as published: its annotation repo, the config and split read, its folder names."""

    name: str
    modality: str
    repo: str
    config: str | None
    split: str
    aliases: tuple[str, ...] = ()
    """Other folder names a local copy may carry (VLM2Vec's ``dataset_name``, local folder names)."""
    every_config: bool = False
    """The task is the union of all configs of its repo (MVBench: one config per sub-task)."""

    @property
    def repo_name(self) -> str:
        return self.repo.split("/")[-1]

    @property
    def folder_names(self) -> tuple[str, ...]:
        """Names a folder holding this task may have, in the order they are tried: the task's own names,
        then its repo's; for an image task its repo's first (``MMEB_Test_Instruct/<task>/``, the files
        VLM2Vec-V2 reads, before any other copy of the task, such as MMEB-V1's rows)."""
        names = (self.repo_name, self.name) if self.modality == "image" else (self.name, *self.aliases, self.repo_name)
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class LocatedTask:
    """A task found in a data folder: its folder and the row files of each config read (``parts``)."""

    task: PublishedTask
    folder: Path
    parts: dict[str, list[Path]] = field(default_factory=dict)
    """Config (a visual-document part, an MVBench sub-task, or ``""``) -> its files of the task's split."""

    @property
    def files(self) -> list[Path]:
        return [f for files in self.parts.values() for f in files]


_IMAGE_TASKS = ["ImageNet-1K", "N24News", "HatefulMemes", "VOC2007", "SUN397", "Place365", "ImageNet-A", "ImageNet-R", "ObjectNet", "Country211", "OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W", "ScienceQA", "VizWiz", "GQA", "TextVQA", "VisDial", "CIRR", "VisualNews_t2i", "VisualNews_i2t", "MSCOCO_t2i", "MSCOCO_i2t", "NIGHTS", "WebQA", "FashionIQ", "Wiki-SS-NQ", "OVEN", "EDIS", "MSCOCO", "RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing"]


def _video(name: str, repo: str, config: str | None = None, split: str = "test", *aliases: str,
           every_config: bool = False) -> PublishedTask:
    return PublishedTask(name, "video", repo, config, split, aliases, every_config)


def _visdoc(name: str, repo: str, split: str, *aliases: str) -> PublishedTask:
    return PublishedTask(name, "visdoc", repo, None, split, aliases)


#: The 78 tasks in MMEB-V2's order (image, video, visual documents).
PUBLISHED: dict[str, PublishedTask] = {t.name: t for t in (
    *(PublishedTask(name, "image", IMAGE_REPO, name, "test") for name in _IMAGE_TASKS),
    _video("K700", "VLM2Vec/Kinetics-700", None, "test", "Kinetics-700"),
    _video("SmthSmthV2", "VLM2Vec/SmthSmthV2", None, "test", "SSv2"),
    _video("HMDB51", "VLM2Vec/HMDB51"),
    _video("UCF101", "VLM2Vec/UCF101"),
    _video("Breakfast", "VLM2Vec/Breakfast"),
    _video("MVBench", "VLM2Vec/MVBench", None, "train", every_config=True),
    _video("Video-MME", "VLM2Vec/Video-MME", None, "test", "videomme"),
    _video("NExTQA", "VLM2Vec/NExTQA", "MC"),
    _video("EgoSchema", "VLM2Vec/EgoSchema", "Subset", "test", "egoschema"),
    _video("ActivityNetQA", "VLM2Vec/ActivityNetQA"),
    _video("DiDeMo", "VLM2Vec/DiDeMo"),
    _video("MSR-VTT", "VLM2Vec/MSR-VTT", "test_1k"),
    _video("MSVD", "VLM2Vec/MSVD"),
    _video("VATEX", "VLM2Vec/VATEX"),
    _video("YouCook2", "lmms-lab/YouCook2", None, "val"),
    _video("QVHighlight", "VLM2Vec/QVHighlight"),
    _video("Charades-STA", "VLM2Vec/Charades-STA", None, "test", "Charades_STA"),
    _video("MomentSeeker", "VLM2Vec/MomentSeeker"),
    _visdoc("ViDoRe_arxivqa", "vidore/arxivqa_test_subsampled_beir", "test"),
    _visdoc("ViDoRe_docvqa", "vidore/docvqa_test_subsampled_beir", "test"),
    _visdoc("ViDoRe_infovqa", "vidore/infovqa_test_subsampled_beir", "test"),
    _visdoc("ViDoRe_tabfquad", "vidore/tabfquad_test_subsampled_beir", "test"),
    _visdoc("ViDoRe_tatdqa", "vidore/tatdqa_test_beir", "test"),
    _visdoc("ViDoRe_shiftproject", "vidore/shiftproject_test_beir", "test"),
    _visdoc("ViDoRe_syntheticDocQA_artificial_intelligence",
            "vidore/syntheticDocQA_artificial_intelligence_test_beir", "test"),
    _visdoc("ViDoRe_syntheticDocQA_energy", "vidore/syntheticDocQA_energy_test_beir", "test"),
    _visdoc("ViDoRe_syntheticDocQA_government_reports", "vidore/syntheticDocQA_government_reports_test_beir", "test"),
    _visdoc("ViDoRe_syntheticDocQA_healthcare_industry",
            "vidore/syntheticDocQA_healthcare_industry_test_beir", "test"),
    _visdoc("ViDoRe_esg_reports_human_labeled_v2", "vidore/esg_reports_human_labeled_v2", "test"),
    _visdoc("ViDoRe_biomedical_lectures_v2_multilingual", "vidore/biomedical_lectures_v2", "test",
            "biomedical_lectures_v2_multilingual"),
    _visdoc("ViDoRe_economics_reports_v2_multilingual", "vidore/economics_reports_v2", "test",
            "economics_reports_v2_multilingual"),
    _visdoc("ViDoRe_esg_reports_v2_multilingual", "vidore/esg_reports_v2", "test", "esg_reports_v2_multilingual"),
    _visdoc("VisRAG_ArxivQA", "openbmb/VisRAG-Ret-Test-ArxivQA", "train"),
    _visdoc("VisRAG_ChartQA", "openbmb/VisRAG-Ret-Test-ChartQA", "train"),
    _visdoc("VisRAG_MP-DocVQA", "openbmb/VisRAG-Ret-Test-MP-DocVQA", "train"),
    _visdoc("VisRAG_SlideVQA", "openbmb/VisRAG-Ret-Test-SlideVQA", "train"),
    _visdoc("VisRAG_InfoVQA", "openbmb/VisRAG-Ret-Test-InfoVQA", "train"),
    _visdoc("VisRAG_PlotQA", "openbmb/VisRAG-Ret-Test-PlotQA", "train"),
    _visdoc("ViDoSeek-page", "VLM2Vec/ViDoSeek-page-fixed", "test"),
    _visdoc("ViDoSeek-doc", "VLM2Vec/ViDoSeek", "test"),
    _visdoc("MMLongBench-page", "VLM2Vec/MMLongBench-page-fixed", "test"),
    _visdoc("MMLongBench-doc", "VLM2Vec/MMLongBench-doc", "test"),
)}


def folder_names() -> frozenset[str]:
    """Every folder name the table gives a task or a repo (such folders are tasks, not datasets of their own)."""
    return frozenset(name for task in PUBLISHED.values() for name in task.folder_names)


def _parts(folder: Path, task: PublishedTask, config: str | None) -> dict[str, list[Path]]:
    if task.modality == "visdoc":
        return {part: split_files(folder, part, task.split) for part in VISDOC_PARTS}
    if task.every_config:
        configs = config_names(folder)
        if not configs:
            raise DataError(f"{task.name}: no configs (one per sub-task) found", file=str(folder))
        return {name: split_files(folder, name, task.split) for name in configs}
    return {"": split_files(folder, config, task.split)}


def locate_in(folder: Path, task: PublishedTask) -> LocatedTask:
    """``task`` read from ``folder`` as its own folder: the task's config if the folder has it, else (when
    it has no folder of that config) its default config; :class:`DataError` naming what is missing otherwise."""
    folder = Path(folder)
    configs = [task.config, None] if task.config and not (folder / task.config).is_dir() else [task.config]
    problem: DataError | None = None
    for config in configs:
        try:
            return LocatedTask(task, Path(folder), _parts(Path(folder), task, config))
        except DataError as exc:
            problem = problem or exc
    assert problem is not None
    raise problem


def locate(root: Path, task: PublishedTask) -> LocatedTask:
    """Where ``task`` is in the data folder ``root``; :class:`DataError` saying where it looked otherwise."""
    root = Path(root)
    looked: list[str] = []
    problems: list[str] = []
    for container in CONTAINERS:
        for name in task.folder_names:
            folder = root / container / name
            looked.append(str(folder.relative_to(root)))
            if not folder.is_dir():
                continue
            try:
                return locate_in(folder, task)
            except DataError as exc:
                problems.append(str(exc))
    said = f"; found but unreadable: {problems[0]}" if problems else ""
    near = _nearby(root, task)
    nearby = f"; nearby: {', '.join(near)}" if near else ""
    raise DataError(f"{task.name} ({task.repo}) not found; looked for folders {', '.join(looked)}{said}{nearby}",
                    file=str(root))


def _squash(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def _nearby(root: Path, task: PublishedTask) -> list[str]:
    """Folders in the places :func:`locate` looks whose names resemble the task's (case, ``-``, ``_`` aside)."""
    wanted = {_squash(name) for name in task.folder_names}
    found = []
    for container in CONTAINERS:
        folder = root / container
        if folder.is_dir():
            found += [str(p.relative_to(root)) for p in sorted(folder.iterdir())
                      if p.is_dir() and any(w in _squash(p.name) or _squash(p.name) in w for w in wanted)
                      and _squash(p.name)]
    return found[:5]


def locate_all(root: Path) -> dict[str, LocatedTask | DataError]:
    """Every task of :data:`PUBLISHED`: where it is, or why it was not found."""
    found: dict[str, LocatedTask | DataError] = {}
    for name, task in PUBLISHED.items():
        try:
            found[name] = locate(root, task)
        except DataError as exc:
            found[name] = exc
    return found


def looks_published(root: Path) -> bool:
    """Whether ``root`` has a container folder or a folder named as a task or repo of the table."""
    root = Path(root)
    names = folder_names()
    return any((root / c).is_dir() for c in CONTAINERS[1:-1]) or any(
        p.is_dir() and p.name in names for p in root.iterdir())


@cache
def video_labels() -> dict[str, tuple[str, ...]]:
    """The built-in label lists VLM2Vec-V2 adds to its global video classification tasks, by task name."""
    text = resources.files("cocoa.data").joinpath("resources/video_labels.json").read_text(encoding="utf-8")
    return {name: tuple(labels) for name, labels in json.loads(text)["labels"].items()}
