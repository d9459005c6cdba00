"""LLaVA-Hound video sets become MMEB-train rows with videos, as VLM2Vec-V2's three loaders build them."""

from __future__ import annotations

from pathlib import Path

from cocoa.data.items import VIDEO_PLACEHOLDER
from cocoa.data.llavahound import convert
from tests.helpers import write_llavahound_jsonl as write_jsonl


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
