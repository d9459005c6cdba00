"""Aggregate per-dataset scores into meta-task, modality, IND/OOD and overall means."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cocoa.evaluate.registry import META_TASKS, MODALITIES, SPLITS, Benchmark, DatasetInfo, modality


@dataclass(frozen=True)
class GroupScore:
    """Mean score (percent) over the finished datasets of a group."""

    score: float | None
    done: int
    total: int

    @property
    def complete(self) -> bool:
        """Every dataset of the group has a score."""
        return self.done == self.total


@dataclass(frozen=True)
class DatasetScore:
    """One dataset's score (percent, by ``metric``) with its place in the benchmark."""

    score: float
    meta_task: str
    split: str | None
    metric: str = "hit@1"


@dataclass
class Summary:
    """Scores of one model on one benchmark; ``overall`` is the mean over datasets.

    A run that lacks datasets of the benchmark is ``complete = False`` and its group means
    cover only the finished datasets (``done`` of ``total``). ``extra`` holds datasets scored in
    the same run that are not part of the benchmark: reported apart, in no group mean.
    ``protocol`` records how items were embedded; two summaries under different protocols
    compare models and protocols at once. ``modalities`` (image, video, visual documents, as
    MMEB-V2 reports them) is filled when the benchmark has more than one.
    """

    benchmark: str
    fingerprint: str
    datasets: dict[str, DatasetScore]
    meta_tasks: dict[str, GroupScore]
    splits: dict[str, GroupScore]
    overall: GroupScore
    missing: list[str]
    encoded: int = 0
    cache_hits: int = 0
    evaluated: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    extra: dict[str, DatasetScore] = field(default_factory=dict)
    modalities: dict[str, GroupScore] = field(default_factory=dict)
    protocol: dict[str, Any] | None = None
    """The embedding protocol the scores were computed under (:meth:`Protocol.to_dict`)."""
    world_size: int = 1
    """How many ranks encoded the items of the datasets this run evaluated (``torchrun``)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Datasets this run could not score, with the reason (each is also ``missing``)."""
    stale: dict[str, str] = field(default_factory=dict)
    """Datasets with a stored score whose data changed since, not run now (each is also ``missing``)."""

    @property
    def complete(self) -> bool:
        """All datasets of the benchmark are scored."""
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of ``summary.json``."""
        data = asdict(self)
        data["complete"] = self.complete
        data["overall"]["partial"] = not self.complete
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        """Inverse of :meth:`to_dict`."""
        def group(raw: Mapping[str, Any]) -> GroupScore:
            return GroupScore(raw["score"], raw["done"], raw["total"])

        return cls(
            benchmark=data["benchmark"], fingerprint=data["fingerprint"],
            datasets={k: DatasetScore(**v) for k, v in data["datasets"].items()},
            meta_tasks={k: group(v) for k, v in data["meta_tasks"].items()},
            splits={k: group(v) for k, v in data["splits"].items()},
            overall=group(data["overall"]), missing=list(data.get("missing", [])),
            encoded=int(data.get("encoded", 0)), cache_hits=int(data.get("cache_hits", 0)),
            evaluated=list(data.get("evaluated", [])), resumed=list(data.get("resumed", [])),
            extra={k: DatasetScore(**v) for k, v in data.get("extra", {}).items()},
            protocol=data.get("protocol"), world_size=int(data.get("world_size", 1)),
            modalities={k: group(v) for k, v in data.get("modalities", {}).items()},
            failed=dict(data.get("failed", {})), stale=dict(data.get("stale", {})),
        )


def _mean(values: list[float], total: int) -> GroupScore:
    return GroupScore(sum(values) / len(values) if values else None, len(values), total)


def summarize(benchmark: Benchmark, scores: Mapping[str, float], fingerprint: str,
              extra: Sequence[DatasetInfo] = ()) -> Summary:
    """Group means of ``scores`` (dataset name -> percent) over ``benchmark``'s datasets.

    Overall is the mean over datasets, never the mean of meta-task means. Scores of the ``extra``
    datasets (not in the benchmark) go to ``Summary.extra``; other scores are ignored.
    """
    done = [info for info in benchmark.datasets if info.name in scores]
    meta_tasks = {
        task: _mean([scores[i.name] for i in done if i.meta_task == task],
                    sum(i.meta_task == task for i in benchmark.datasets))
        for task in META_TASKS if any(i.meta_task == task for i in benchmark.datasets)
    }
    splits = {
        split: _mean([scores[i.name] for i in done if i.split == split],
                     sum(i.split == split for i in benchmark.datasets))
        for split in SPLITS if any(i.split == split for i in benchmark.datasets)
    }
    present = {modality(i.meta_task) for i in benchmark.datasets}
    modalities = {
        kind: _mean([scores[i.name] for i in done if modality(i.meta_task) == kind],
                    sum(modality(i.meta_task) == kind for i in benchmark.datasets))
        for kind in MODALITIES if kind in present and len(present) > 1
    }
    return Summary(
        benchmark=benchmark.name, fingerprint=fingerprint, modalities=modalities,
        datasets={i.name: DatasetScore(scores[i.name], i.meta_task, i.split, i.metric) for i in done},
        meta_tasks=meta_tasks, splits=splits,
        overall=_mean([scores[i.name] for i in done], len(benchmark.datasets)),
        missing=[i.name for i in benchmark.datasets if i.name not in scores],
        extra={i.name: DatasetScore(scores[i.name], i.meta_task, i.split, i.metric)
               for i in extra if i.name in scores and benchmark.get(i.name) is None},
    )
