"""The MMEB-V1 registry and manifest-based benchmarks."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cocoa.errors import DataError
from cocoa.evaluate.registry import MMEB_V1, load_manifest, resolve_benchmark


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
