"""cocoa.data.cli (`cocoa data`): the mini and llavahound commands."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.core.errors import DataError
from cocoa.data.llavahound import convert
from cocoa.data.minimmeb.build import Manifest
from cocoa.data.train_pairs import read_train_pairs
from tests.helpers import write_llavahound_jsonl as write_jsonl


def test_cli_writes_a_train_subset_the_trainer_reads(video_dir: Path, tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "set.jsonl", video_dir)
    out = tmp_path / "train" / "video_caption.parquet"
    result = CliRunner().invoke(app, ["data", "llavahound", "--jsonl", str(jsonl), "--frames", str(video_dir),
                                      "--mode", "qa", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 rows written" in result.output and "1 rows without frames skipped" in result.output
    assert pq.read_table(out).num_rows == 2
    pairs = read_train_pairs(tmp_path, None, video_dir)
    assert [p.query.video for p in pairs] == [str(video_dir / "clip"), str(video_dir / "long")]
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "video": "clip"}\n')
    with pytest.raises(DataError, match="not a LLaVA-Hound row") as caught:
        convert(tmp_path / "bad.jsonl", video_dir, "caption")
    assert caught.value.line == 1
    with pytest.raises(DataError, match="mode must be one of"):
        convert(jsonl, video_dir, "captions")


def test_cli_passes_pool_and_grounding_sizes(tmp_path):
    out = tmp_path / "cli-mini"
    result = CliRunner().invoke(app, ["data", "mini", "--out", str(out), "--queries", "5", "--pool", "7",
                                      "--grounding-candidates", "6", "--train-size", "8", "--video-queries", "8",
                                      "--video-train-size", "8"])
    assert result.exit_code == 0, result.output
    manifest = Manifest.from_json((out / "manifest.json").read_text())
    assert manifest.params == {"queries": 5, "pool": 7, "train_size": 8, "grounding_candidates": 6,
                               "video_queries": 8, "video_train_size": 8}
    info = {d.name: d for d in manifest.datasets}
    assert info["SceneT2I"].min_candidates == info["SceneT2I"].max_candidates == 7
    assert info["SceneGrounding"].max_candidates == 6
    refused = CliRunner().invoke(app, ["data", "mini", "--out", str(tmp_path / "bad"), "--pool", "1"])
    assert refused.exit_code != 0 and "--pool" in refused.output
    assert not (tmp_path / "bad").exists()
