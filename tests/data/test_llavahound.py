"""LLaVA-Hound video sets become MMEB-train rows with videos, as VLM2Vec-V2's three loaders build them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.core.errors import DataError
from cocoa.data.items import VIDEO_PLACEHOLDER
from cocoa.data.llavahound import convert
from cocoa.data.train_pairs import read_train_pairs


def write_jsonl(path: Path, video_dir: Path) -> Path:
    rows = [{"id": "a", "video": "clip", "conversations": [{"from": "human", "value": "<video>\nDescribe it."},
                                                           {"from": "gpt", "value": "noise that moves"}]},
            {"id": "b", "video": "missing", "conversations": [{"from": "human", "value": "<video>\nWhat?"},
                                                              {"from": "gpt", "value": "nothing"}]},
            {"id": "c", "video": "long", "conversations": [{"from": "human", "value": "<video>\nIs it long?"},
                                                           {"from": "gpt", "value": "yes"}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_three_modes_as_the_reference_builds_them(video_dir: Path, tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "set.jsonl", video_dir)
    caption, missing = convert(jsonl, video_dir, "caption")
    assert missing == 1 and caption["qry"] == [f"{VIDEO_PLACEHOLDER}\nDescribe it.", f"{VIDEO_PLACEHOLDER}\nIs it long?"]
    assert caption["qry_video_path"] == [str(video_dir / "clip"), str(video_dir / "long")]
    assert caption["pos_text"] == ["noise that moves", "yes"] and caption["pos_video_path"] == ["", ""]
    retrieval, _ = convert(jsonl, video_dir, "retrieval")
    assert retrieval["qry"][0] == "Find a video that contains the following visual content: noise that moves"
    assert retrieval["pos_text"][0] == f"Understand the content of the provided video: {VIDEO_PLACEHOLDER}"
    assert retrieval["pos_video_path"][0] == str(video_dir / "clip") and retrieval["qry_video_path"][0] == ""
    qa, _ = convert(jsonl, video_dir, "qa", limit=1)
    assert qa["qry"] == [f"Answer a question based on the content of a video. {VIDEO_PLACEHOLDER}\nDescribe it."]


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
