"""cocoa.evaluate.plan: which datasets an evaluation runs, known or extra, and the errors that stop it."""

from __future__ import annotations

import json

import pytest

from cocoa.core.errors import ConfigError, DataError
from cocoa.evaluate import evaluate
from cocoa.evaluate.cards import parse_dataset_info
from tests.helpers import FakeEncoder, write_eval, write_images


def test_known_benchmark_overall_never_includes_custom_datasets(tmp_path) -> None:
    root = tmp_path / "data"
    write_images(root / "images", "a.png")
    write_eval(root / "ImageNet-1K" / "test-00000-of-00001.parquet",
               [("<|image_1|> classify [1,0]", "a.png", ["[1,0] cat", "[0,1] dog"], ["", ""])])
    write_eval(root / "Mine" / "test-00000-of-00001.parquet",
               [("which [1,0]", "", ["[0,1] dog", "[1,0] cat"], ["", ""])])
    summary = evaluate(FakeEncoder(), root, tmp_path / "out", show_progress=False,
                       dataset_info={"Mine": parse_dataset_info("Mine=retrieval:IND")[1]})
    assert summary.benchmark == "MMEB-V1"
    assert list(summary.datasets) == ["ImageNet-1K"]
    assert summary.overall.score == 100.0 and (summary.overall.done, summary.overall.total) == (1, 36)
    assert {name: (d.score, d.meta_task, d.split) for name, d in summary.extra.items()} == {
        "Mine": (0.0, "retrieval", "IND")}
    assert summary.meta_tasks["retrieval"].done == 0
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "## Not in MMEB-V1" in markdown and "| Mine | Retrieval | IND | 0.00 |" in markdown
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["extra"]["Mine"]["score"] == 0.0 and saved["overall"]["score"] == 100.0


def test_a_card_contradicting_the_registry_is_refused(tmp_path) -> None:
    root = tmp_path / "data"
    write_eval(root / "ImageNet-1K" / "test-00000-of-00001.parquet", [("q", "", ["a", "b"], ["", ""])])
    (root / "ImageNet-1K" / "card.yaml").write_text("meta_task: vqa\n")
    with pytest.raises(DataError, match="ImageNet-1K is a dataset of MMEB-V1 with meta_task 'classification'"):
        evaluate(FakeEncoder(), root, tmp_path / "out", show_progress=False)
    with pytest.raises(ConfigError, match="fixed groups"):
        evaluate(FakeEncoder(), root, tmp_path / "out", show_progress=False,
                 dataset_info={"ImageNet-1K": parse_dataset_info("ImageNet-1K=vqa")[1]})


def test_an_empty_folder_keeps_its_error(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(ConfigError, match="no dataset of MMEB-V1 found; found: nothing"):
        evaluate(FakeEncoder(), tmp_path / "data", tmp_path / "out", show_progress=False)
