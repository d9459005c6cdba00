"""Which datasets make up a benchmark, with their meta-task, IND/OOD split and metric.

MMEB-V1 names and groups: TIGER-Lab/MMEB-eval and the VLM2Vec paper (see docs/evaluate-your-data.md).
MMEB-V2 names, their order and the per-modality metric (``hit@1`` for image and video,
``ndcg_linear@5`` for visual documents): ``modality2dataset`` / ``modality2metric`` in
``experiments/report_score_v2.py`` of github.com/TIGER-AI-Lab/VLM2Vec. The V2 meta-task of each
image dataset is its V1 one; the video meta-tasks follow the order of that list (5 classification,
5 QA, 5 retrieval, 3 moment retrieval, the counts the MMEB-V2 paper gives); all 24 visual-document
tasks form one meta-task.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from cocoa.core.errors import ConfigError, DataError

META_TASKS = ("classification", "vqa", "retrieval", "grounding", "visdoc", "video_classification", "video_qa",
              "video_retrieval", "moment_retrieval", "other")
VIDEO_META_TASKS = ("video_classification", "video_qa", "video_retrieval", "moment_retrieval")
#: The modalities MMEB-V2 reports apart, in its order.
MODALITIES = ("image", "video", "visdoc")


def modality(meta_task: str) -> str:
    """The modality of a meta-task: ``video`` and ``visdoc`` by name, ``image`` for every other."""
    return "video" if meta_task in VIDEO_META_TASKS else "visdoc" if meta_task == "visdoc" else "image"
SPLITS = ("IND", "OOD")
#: Scores a dataset can be reported by: Precision@1 (= hit@1) or linear-gain NDCG@5, both in percent.
METRICS = ("hit@1", "ndcg@5")
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of a benchmark."""

    name: str
    meta_task: str
    split: str | None
    metric: str = "hit@1"


@dataclass(frozen=True)
class Benchmark:
    """An ordered set of datasets whose scores make up one overall number."""

    name: str
    datasets: tuple[DatasetInfo, ...]

    def names(self) -> list[str]:
        """Dataset names in benchmark order."""
        return [info.name for info in self.datasets]

    def get(self, name: str) -> DatasetInfo | None:
        """The dataset called ``name``, or ``None``."""
        return next((info for info in self.datasets if info.name == name), None)


def _table(meta_task: str, ind: str, ood: str) -> list[DatasetInfo]:
    return ([DatasetInfo(name, meta_task, "IND") for name in ind.split()]
            + [DatasetInfo(name, meta_task, "OOD") for name in ood.split()])


def _unsplit(meta_task: str, names: str, metric: str = "hit@1") -> list[DatasetInfo]:
    return [DatasetInfo(name, meta_task, None, metric) for name in names.split()]


#: The 36 datasets of MMEB-V1 (names as in the TIGER-Lab/MMEB-eval configs).
MMEB_V1 = Benchmark("MMEB-V1", tuple(
    _table("classification", "ImageNet-1K N24News HatefulMemes VOC2007 SUN397",
           "Place365 ImageNet-A ImageNet-R ObjectNet Country211")
    + _table("vqa", "OK-VQA A-OKVQA DocVQA InfographicsVQA ChartQA Visual7W",
             "ScienceQA VizWiz GQA TextVQA")
    + _table("retrieval", "VisDial CIRR VisualNews_t2i VisualNews_i2t MSCOCO_t2i MSCOCO_i2t NIGHTS WebQA",
             "FashionIQ Wiki-SS-NQ OVEN EDIS")
    + _table("grounding", "MSCOCO", "RefCOCO RefCOCO-Matching Visual7W-Pointing")
))

#: The 78 tasks of MMEB-V2: the 36 image tasks of V1 (same splits), 18 video and 24 visual-document tasks.
MMEB_V2 = Benchmark("MMEB-V2", MMEB_V1.datasets + tuple(
    _unsplit("video_classification", "K700 SmthSmthV2 HMDB51 UCF101 Breakfast")
    + _unsplit("video_qa", "MVBench Video-MME NExTQA EgoSchema ActivityNetQA")
    + _unsplit("video_retrieval", "DiDeMo MSR-VTT MSVD VATEX YouCook2")
    + _unsplit("moment_retrieval", "QVHighlight Charades-STA MomentSeeker")
    + _unsplit("visdoc", "ViDoRe_arxivqa ViDoRe_docvqa ViDoRe_infovqa ViDoRe_tabfquad ViDoRe_tatdqa "
                         "ViDoRe_shiftproject ViDoRe_syntheticDocQA_artificial_intelligence "
                         "ViDoRe_syntheticDocQA_energy ViDoRe_syntheticDocQA_government_reports "
                         "ViDoRe_syntheticDocQA_healthcare_industry ViDoRe_esg_reports_human_labeled_v2 "
                         "ViDoRe_biomedical_lectures_v2_multilingual ViDoRe_economics_reports_v2_multilingual "
                         "ViDoRe_esg_reports_v2_multilingual VisRAG_ArxivQA VisRAG_ChartQA VisRAG_MP-DocVQA "
                         "VisRAG_SlideVQA VisRAG_InfoVQA VisRAG_PlotQA ViDoSeek-page ViDoSeek-doc "
                         "MMLongBench-page MMLongBench-doc", "ndcg@5")
))

#: Known benchmarks by name, as ``--benchmark`` takes them.
BENCHMARKS = {"MMEB-V1": MMEB_V1, "MMEB-V2": MMEB_V2}


def _dataset_from_manifest(entry: object, name: str | None, file: str) -> DatasetInfo:
    if not isinstance(entry, dict):
        raise DataError("dataset entry is not an object", file=file, field="datasets")
    name = entry.get("name", name)
    meta_task = str(entry.get("meta_task", "")).lower()
    split = str(entry.get("split", "")).upper()
    if not isinstance(name, str) or not name:
        raise DataError("dataset entry has no name", file=file, field="datasets")
    if meta_task not in META_TASKS:
        raise DataError(f"dataset {name}: meta_task must be one of {META_TASKS}, got {meta_task!r}",
                        file=file, field="meta_task")
    if split not in SPLITS:
        raise DataError(f"dataset {name}: split must be one of {SPLITS}, got {split!r}",
                        file=file, field="split")
    return DatasetInfo(name, meta_task, split)


def load_manifest(path: Path) -> Benchmark:
    """Read a MiniMMEB ``manifest.json`` (``datasets`` as a list of entries or a name->entry map)."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read manifest: {exc}", file=str(path)) from exc
    entries = manifest.get("datasets") if isinstance(manifest, dict) else None
    if isinstance(entries, dict):
        datasets = [_dataset_from_manifest(entry, name, str(path)) for name, entry in entries.items()]
    elif isinstance(entries, list):
        datasets = [_dataset_from_manifest(entry, None, str(path)) for entry in entries]
    else:
        raise DataError("manifest has no 'datasets' list", file=str(path), field="datasets")
    return Benchmark(str(manifest.get("name") or manifest.get("benchmark") or "MiniMMEB"), tuple(datasets))


def resolve_benchmark(data_dir: Path, available: Collection[str] = (), name: str | None = None) -> Benchmark:
    """The benchmark of a data folder: ``name`` if given (see :data:`BENCHMARKS`), else its
    ``manifest.json`` if present, else MMEB-V2 when one of the ``available`` datasets is in V2 but
    not V1, else MMEB-V1."""
    if name is not None:
        for key, benchmark in BENCHMARKS.items():
            if key.lower() == name.lower():
                return benchmark
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    manifest = Path(data_dir) / MANIFEST_NAME
    if manifest.is_file():
        return load_manifest(manifest)
    v1 = set(MMEB_V1.names())
    return MMEB_V2 if any(MMEB_V2.get(d) is not None and d not in v1 for d in available) else MMEB_V1
