"""The run report's comparison of each dataset with chance (from the MiniMMEB manifest)."""

from __future__ import annotations

import json

from cocoa.data.minimmeb.build import DatasetInfo, Manifest
from cocoa.pipeline.driver import mini_chance
from cocoa.pipeline.report import chance_lines


def _manifest(chances: list[float]) -> Manifest:
    datasets = [DatasetInfo(f"D{i}", "classification", "IND", 10, 4, 4, chance) for i, chance in enumerate(chances)]
    return Manifest(seed=0, params={}, datasets=datasets, train_rows={}, pretrain_rows={}, sources={}, version=2)


def test_chance_comes_from_the_manifest_and_version_one_has_none(tmp_path):
    assert mini_chance(tmp_path) is None
    (tmp_path / "manifest.json").write_text(_manifest([25.0, 10.0]).to_json())
    assert mini_chance(tmp_path) == {"D0": 25.0, "D1": 10.0}
    version_one = json.loads(_manifest([25.0, 10.0]).to_json())  # version 1 wrote no chance per dataset
    version_one["version"] = 1
    for entry in version_one["datasets"]:
        del entry["chance"]
    (tmp_path / "manifest.json").write_text(json.dumps(version_one))
    assert mini_chance(tmp_path) is None


def test_chance_lines_give_the_margin_of_each_scored_dataset():
    summary = {"datasets": {"D0": {"score": 40.0}, "D1": {"score": 5.5}, "X": {"score": 1.0}}}
    lines = chance_lines(summary, {"D0": 25.0, "D1": 10.0})
    assert lines[-2:] == ["| D0 | 40.00 | 25.00 | +15.00 |", "| D1 | 5.50 | 10.00 | -4.50 |"]
