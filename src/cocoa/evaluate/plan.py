"""What an evaluation runs: the benchmark, the datasets of a folder with their groups, and how to read each.

A folder with a ``manifest.json`` (MiniMMEB) is that benchmark and nothing else. Otherwise the
benchmark is MMEB-V1 or MMEB-V2 (``--benchmark``, else guessed from the names, see
:func:`~cocoa.evaluate.registry.resolve_benchmark`), and the folder's other datasets are
evaluated too but kept apart (``Summary.extra``), with their meta-task, split and metric from a
dataset card or ``--dataset-info`` (:mod:`cocoa.evaluate.cards`), else meta-task ``other``.
A folder holding none of the benchmark's datasets is a custom benchmark of all of its datasets.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cocoa.core.errors import ConfigError, DataError
from cocoa.data.eval_sets import LoadedEvalDataset, is_visdoc_folder, read_eval_dataset
from cocoa.data.instruct import REFERENCE_FORMATS
from cocoa.data.mmeb_v2 import PUBLISHED, locate
from cocoa.data.published import default_image_root, read_located
from cocoa.data.visdoc import CorpusDataset, read_visdoc_dataset
from cocoa.evaluate.cards import Card, card_file, read_card
from cocoa.evaluate.registry import BENCHMARKS, MANIFEST_NAME, Benchmark, DatasetInfo, resolve_benchmark


@dataclass(frozen=True)
class Plan:
    """The benchmark, the datasets to run (in order), the folder's datasets outside the benchmark
    (``extra``, reported apart) and the instruction format of each instruction-split dataset."""

    benchmark: Benchmark
    run: list[DatasetInfo]
    extra: list[DatasetInfo] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)


def select_datasets(benchmark: Benchmark, available: Collection[str], wanted: Sequence[str] | None) -> list[str]:
    """The datasets to run, in benchmark order: ``wanted`` or every available one of the benchmark."""
    if wanted is None:
        names = [name for name in benchmark.names() if name in available]
        if not names:
            raise ConfigError(f"no dataset of {benchmark.name} found; found: {sorted(available) or 'nothing'}")
        return names
    for name in wanted:
        if benchmark.get(name) is None:
            raise ConfigError(f"{name!r} is not a dataset of {benchmark.name}")
        if name not in available:
            raise ConfigError(f"dataset {name!r} not found in the data folder; found: {sorted(available)}")
    return [name for name in benchmark.names() if name in set(wanted)]


def dataset_folder(data_dir: Path, name: str) -> Path | None:
    """The folder of dataset ``name`` (``DATA/name`` or ``DATA/eval/name``), if it has one."""
    for folder in (Path(data_dir) / name, Path(data_dir) / "eval" / name):
        if folder.is_dir():
            return folder
    return None


def _is_visdoc(data_dir: Path, name: str) -> bool:
    folder = dataset_folder(data_dir, name)
    return folder is not None and is_visdoc_folder(folder)


def _card(data_dir: Path, name: str, overrides: Mapping[str, Card]) -> Card | None:
    if name in overrides:
        return overrides[name]
    path = card_file(data_dir, name)
    return read_card(path) if path is not None else None


def _unknown_info(data_dir: Path, name: str, card: Card | None) -> DatasetInfo:
    visdoc = _is_visdoc(data_dir, name)
    metric = (card.metric if card else None) or ("ndcg@5" if visdoc else "hit@1")
    if metric != "hit@1" and not visdoc:
        raise ConfigError(f"dataset {name!r}: metric {metric} needs the visual-document layout "
                          "(corpus / queries / qrels); rows with their own candidates are scored by hit@1")
    return DatasetInfo(name, card.meta_task if card else "other", card.split if card else None, metric)


def _check_known(info: DatasetInfo, card: Card | None, benchmark: Benchmark, data_dir: Path) -> None:
    if card is None:
        return
    said = {"meta_task": card.meta_task, "split": card.split, "metric": card.metric}
    for key, value in said.items():
        if value is not None and value != getattr(info, key):
            raise DataError(f"the card of {info.name} says {key} {value!r}, but {info.name} is a dataset of "
                            f"{benchmark.name} with {key} {getattr(info, key)!r}",
                            file=str(card_file(data_dir, info.name) or "--dataset-info"), field=key)


def plan(data_dir: Path, available: Sequence[str], wanted: Sequence[str] | None = None,
         benchmark_name: str | None = None, overrides: Mapping[str, Card] | None = None) -> Plan:
    """The datasets of ``data_dir`` to evaluate (``wanted``, default: all of ``available``)."""
    overrides = dict(overrides or {})
    benchmark = resolve_benchmark(data_dir, available, benchmark_name)
    if benchmark not in BENCHMARKS.values():
        if overrides:
            raise ConfigError(f"--dataset-info is for folders without a manifest; {benchmark.name} lists its own")
        return Plan(benchmark, [benchmark.get(name) for name in select_datasets(benchmark, available, wanted)])
    if not available:
        raise ConfigError(f"no dataset of {benchmark.name} found; found: nothing")
    for name in overrides:
        if name not in available:
            raise ConfigError(f"--dataset-info names {name!r}, which is not in the data folder; found: "
                              f"{sorted(available)}")
        if benchmark.get(name) is not None:
            raise ConfigError(f"--dataset-info names {name!r}, a dataset of {benchmark.name} with fixed groups")
    for name in wanted or ():
        if name not in available:
            raise ConfigError(f"dataset {name!r} not found in the data folder; found: {sorted(available)}")
    chosen = set(available if wanted is None else wanted)
    cards = {name: _card(data_dir, name, overrides) for name in available}
    formats = {name: fmt for name in available
               if (fmt := (cards[name].instruction_format if cards[name] else None) or REFERENCE_FORMATS.get(name))}
    known = [info for info in benchmark.datasets if info.name in available]
    for info in known:
        _check_known(info, cards[info.name], benchmark, data_dir)
    unknown = [_unknown_info(data_dir, name, cards[name]) for name in sorted(available)
               if benchmark.get(name) is None]
    if not known:
        custom = Benchmark(Path(data_dir).resolve().name, tuple(unknown))
        return Plan(custom, [info for info in unknown if info.name in chosen], [], formats)
    run = [info for info in known + unknown if info.name in chosen]
    return Plan(benchmark, run, unknown, formats)


def read_dataset(data_dir: Path, info: DatasetInfo, image_root: Path | None, *, instruction_format: str | None,
                 skip_bad: bool = False, check_images: bool = True,
                 allow_outside_paths: bool = False) -> LoadedEvalDataset | CorpusDataset:
    """Read dataset ``info.name`` in its layout: an MMEB-V2 task where it is published
    (:func:`cocoa.data.mmeb_v2.locate`; video frames under ``data_dir``), else a dataset folder of
    ``data_dir``. Media resolve against ``image_root``, by default :func:`default_image_root`."""
    data_dir = Path(data_dir)
    task = PUBLISHED.get(info.name)
    located = None
    if task is not None and not (data_dir / MANIFEST_NAME).is_file():
        try:
            located = locate(data_dir, task)
        except DataError:
            if task.modality == "video":
                raise
    if located is not None:
        return read_located(data_dir, located, image_root, skip_bad=skip_bad, check_images=check_images,
                            instruction_format=instruction_format, allow_outside_paths=allow_outside_paths)
    root = Path(image_root) if image_root is not None else default_image_root(data_dir, "other")
    folder = dataset_folder(data_dir, info.name)
    if folder is not None and is_visdoc_folder(folder):
        return read_visdoc_dataset(folder, root, name=info.name, skip_bad=skip_bad, check_images=check_images,
                                   allow_outside_paths=allow_outside_paths)
    if info.metric != "hit@1":
        raise DataError(f"{info.name} is scored by {info.metric}, which needs the visual-document layout "
                        f"(corpus / queries / qrels), but {data_dir} holds it as MMEB-eval rows")
    return read_eval_dataset(data_dir, info.name, root, skip_bad=skip_bad, check_images=check_images,
                             instruction_format=instruction_format, allow_outside_paths=allow_outside_paths)
