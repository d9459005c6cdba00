"""The MMEB-V1 registry and manifest-based benchmarks."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cocoa.core.errors import ConfigError, DataError
from cocoa.evaluate.registry import MMEB_V1, MMEB_V2, load_manifest, resolve_benchmark


def test_mmeb_v1_has_the_36_datasets_with_their_groups() -> None:
    names = MMEB_V1.names()
    assert len(names) == len(set(names)) == 36
    assert "CIFAR-100" not in names
    assert Counter(i.meta_task for i in MMEB_V1.datasets) == {
        "classification": 10, "vqa": 10, "retrieval": 12, "grounding": 4}
    assert Counter(i.split for i in MMEB_V1.datasets) == {"IND": 20, "OOD": 16}
    assert MMEB_V1.get("ImageNet-1K").split == "IND"
    assert MMEB_V1.get("Visual7W-Pointing").meta_task == "grounding"
    assert MMEB_V1.get("Wiki-SS-NQ").split == "OOD"
    assert MMEB_V1.get("MSCOCO").meta_task == "grounding"


def test_resolve_prefers_the_manifest(tmp_path) -> None:
    assert resolve_benchmark(tmp_path) is MMEB_V1
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "MiniMMEB", "datasets": [
        {"name": "Digits", "meta_task": "classification", "split": "OOD", "rows": 10},
        {"name": "SceneVQA", "meta_task": "VQA", "split": "ind"},
    ]}))
    bench = resolve_benchmark(tmp_path)
    assert bench.name == "MiniMMEB"
    assert bench.names() == ["Digits", "SceneVQA"]
    assert bench.get("SceneVQA").meta_task == "vqa"
    assert bench.get("SceneVQA").split == "IND"


def test_manifest_with_a_bad_meta_task_is_refused(tmp_path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"datasets": {"X": {"meta_task": "ranking", "split": "IND"}}}))
    with pytest.raises(DataError, match="meta_task"):
        load_manifest(path)


def test_mmeb_v2_has_the_78_tasks_and_is_chosen_by_name_or_by_a_v2_only_dataset(tmp_path) -> None:
    names = MMEB_V2.names()
    assert len(names) == len(set(names)) == 78
    assert names[:36] == MMEB_V1.names()
    assert Counter(i.meta_task for i in MMEB_V2.datasets if i.name not in MMEB_V1.names()) == {
        "video_classification": 5, "video_qa": 5, "video_retrieval": 5, "moment_retrieval": 3, "visdoc": 24}
    assert {i.metric for i in MMEB_V2.datasets if i.meta_task == "visdoc"} == {"ndcg@5"}
    assert MMEB_V2.get("ImageNet-A").split == "OOD" and MMEB_V2.get("VisRAG_PlotQA").split is None
    assert resolve_benchmark(tmp_path, ["ImageNet-1K", "Mine"]) is MMEB_V1
    assert resolve_benchmark(tmp_path, ["ImageNet-1K", "ViDoRe_docvqa"]) is MMEB_V2
    assert resolve_benchmark(tmp_path, ["ImageNet-1K"], "mmeb-v2") is MMEB_V2
    with pytest.raises(ConfigError, match="unknown benchmark 'MMEB-V3'"):
        resolve_benchmark(tmp_path, [], "MMEB-V3")
