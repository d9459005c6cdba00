"""Which datasets make up a benchmark, with their meta-task and IND/OOD split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cocoa.errors import DataError

META_TASKS = ("classification", "vqa", "retrieval", "grounding")
SPLITS = ("IND", "OOD")
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of a benchmark."""

    name: str
    meta_task: str
    split: str


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


def resolve_benchmark(data_dir: Path) -> Benchmark:
    """The benchmark of a data folder: its ``manifest.json`` if present, else MMEB-V1."""
    manifest = Path(data_dir) / MANIFEST_NAME
    return load_manifest(manifest) if manifest.is_file() else MMEB_V1
