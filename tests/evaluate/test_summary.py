"""cocoa.evaluate.summary: scores grouped by meta-task, modality and split; overall means and partial runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cocoa.evaluate.registry import Benchmark, DatasetInfo
from cocoa.evaluate.summary import summarize
from cocoa.inference.batch_encoder import BatchEncoder


def test_every_video_task_is_scored_and_grouped_by_its_meta_task(evaluated: tuple[Path, Path, BatchEncoder]) -> None:
    _, out, _ = evaluated
    summary = json.loads((out / "summary.json").read_text())
    tasks = {"K700", "SmthSmthV2", "MSR-VTT", "DiDeMo", "QVHighlight", "MomentSeeker", "Video-MME", "NExTQA",
             "EgoSchema", "MVBench", "ActivityNetQA"}
    assert set(summary["datasets"]) == tasks
    assert {"video_classification", "video_qa", "video_retrieval", "moment_retrieval"} <= set(summary["meta_tasks"])
    assert all(json.loads((out / f"{t}_score.json").read_text())["metric"] == "hit@1" for t in tasks)
    video = summary["modalities"]["video"]
    assert (video["done"], video["total"]) == (11, 18)
    assert video["score"] == pytest.approx(np.mean([summary["datasets"][t]["score"] for t in tasks]))
    assert summary["modalities"]["image"] == {"score": None, "done": 0, "total": 36}
    assert "| Video |" in (out / "summary.md").read_text()


def test_overall_is_the_mean_over_datasets_not_meta_tasks() -> None:
    bench = Benchmark("B", (DatasetInfo("a", "classification", "IND"), DatasetInfo("b", "classification", "OOD"),
                            DatasetInfo("c", "retrieval", "IND")))
    summary = summarize(bench, {"a": 100.0, "b": 0.0, "c": 100.0}, "fp")
    assert summary.complete
    assert summary.meta_tasks["classification"].score == 50.0
    assert summary.overall.score == pytest.approx(200 / 3)
    assert summary.splits["IND"].score == 100.0
    assert summary.splits["OOD"].score == 0.0


def test_a_partial_run_is_flagged() -> None:
    bench = Benchmark("B", (DatasetInfo("a", "vqa", "IND"), DatasetInfo("b", "vqa", "OOD")))
    summary = summarize(bench, {"a": 40.0}, "fp")
    assert not summary.complete
    assert summary.missing == ["b"]
    assert (summary.overall.done, summary.overall.total) == (1, 2)
    data = summary.to_dict()
    assert data["complete"] is False
    assert data["overall"]["partial"] is True
