"""cocoa.data.check (`cocoa data check`): where each MMEB-V2 task was looked for and what is wrong with it."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from cocoa.data.check import check_published, check_task
from cocoa.data.cli import app as data_app
from cocoa.evaluate import evaluate
from tests.helpers import FakeEncoder, copy_of


def test_a_task_missing_its_media_is_reported_and_the_rest_is_scored(fetched: Path, tmp_path: Path) -> None:
    data = copy_of(fetched, tmp_path)
    shutil.rmtree(data / "video-tasks" / "frames" / "video_cls" / "UCF101" / "ucf101_1")
    shutil.rmtree(data / "video-tasks" / "frames" / "video_mret")
    checks = {c.name: c for c in check_published(data)}
    assert checks["UCF101"].status == "found" and checks["UCF101"].skipped == 1
    assert "video frame folder not found" in checks["UCF101"].reason and "ucf101_1" in checks["UCF101"].reason
    assert checks["QVHighlight"].status == "malformed" and "no usable row" in checks["QVHighlight"].reason
    summary = evaluate(FakeEncoder(), data, tmp_path / "out", benchmark="MMEB-V2", show_progress=False)
    assert set(summary.failed) == {"UCF101", "QVHighlight", "Charades-STA", "MomentSeeker"}
    assert "ucf101_1" in summary.failed["UCF101"] and summary.overall.done == 74 and not summary.complete
    assert "Not scored" in (tmp_path / "out" / "summary.md").read_text()


def test_check_says_where_it_looked_and_what_is_malformed(fetched: Path, tmp_path: Path) -> None:
    data = copy_of(fetched, tmp_path)
    shutil.rmtree(data / "video-tasks" / "MSVD")
    (data / "video-tasks" / "msvd_old").mkdir()
    (data / "video-tasks" / "HMDB51" / "data" / "test.jsonl").write_text('{"video_id": "x"}\n')
    missing = check_task(data, "MSVD")
    assert missing.status == "missing" and "video-tasks/MSVD" in missing.reason and "VLM2Vec/MSVD" in missing.reason
    assert "nearby: video-tasks/msvd_old" in missing.reason
    malformed = check_task(data, "HMDB51")
    assert malformed.status == "malformed" and "field 'pos_text'" in malformed.reason and "test.jsonl" in malformed.reason
    result = CliRunner().invoke(data_app, ["check", str(data)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert sum(line.startswith(("found", "missing", "malformed")) for line in lines) == 78
    assert "76 of 78 tasks found" in lines[-1] and "1 missing, 1 malformed" in lines[-1]
