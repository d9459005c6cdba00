"""cocoa.data.get (`cocoa data get`): MMEB-train, V1 and V2 from folders laid out like the snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocoa.core.errors import ConfigError
from cocoa.data.check import check_task
from cocoa.data.cli import app
from cocoa.data.cli import app as data_app
from cocoa.data.get import GetReport, check_media, get
from cocoa.data.mmeb_v2 import PUBLISHED
from tests.helpers import fake_train_snapshot
from tests.mmeb_v2_published import EXPECTED, fake_snapshot_download


def test_train_set_is_unpacked_and_checked_and_a_rerun_unpacks_nothing(tmp_path: Path) -> None:
    report = get("mmeb-train", tmp_path, download=fake_train_snapshot)
    assert (tmp_path / "images" / "CIRR" / "a.png").is_file()
    assert (report.archives_unpacked, report.parquet_files, report.media_checked, report.media_missing) == (2, 2, 4, 0)
    assert report.revision == "abc123" and report.bytes > 0
    again = get("mmeb-train", tmp_path, download=fake_train_snapshot)
    assert (again.archives_unpacked, again.archives_skipped) == (0, 2)
    (tmp_path / "images" / "DocVQA" / "b.png").unlink()
    missing = get("mmeb-train", tmp_path, download=fake_train_snapshot)
    assert missing.media_missing == 1 and missing.first_missing == "DocVQA/original-00000-of-00001.parquet: DocVQA/b.png"


def test_the_media_check_reads_video_columns_and_the_paths_inside_extra_negatives(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "images" / "clip").mkdir(parents=True)
    (tmp_path / "images" / "a.png").write_bytes(b"")
    negatives = [[{"neg_text": "a.png is only text here", "neg_image_path": "a.png", "neg_video_path": None},
                  {"neg_text": "", "neg_image_path": None, "neg_video_path": "gone.mp4"}]]
    pq.write_table(pa.table({"qry": ["q"], "qry_image_path": ["a.png"], "qry_video_path": ["clip"],
                             "pos_text": ["p"], "pos_image_path": [""], "extra_negatives": negatives}),
                   tmp_path / "mined.parquet")
    report = GetReport("mined", "local", None, tmp_path)
    check_media(tmp_path, ("images",), report)
    assert (report.media_checked, report.media_missing) == (4, 1)
    assert report.first_missing == "mined.parquet: gone.mp4"


def test_get_then_check_finds_78_of_78_with_the_expected_counts(tmp_path: Path, trees: dict) -> None:
    calls: list[dict] = []
    report = get("mmeb-v2", tmp_path, download=fake_snapshot_download(trees, calls))
    assert [(c.name, c.status, c.rows, c.candidates, c.skipped) for c in report.tasks] == [
        (name, "found", *EXPECTED[name], 0) for name in PUBLISHED]
    assert {c["repo_id"] for c in calls} == {t.repo for t in PUBLISHED.values()} | {"TIGER-Lab/MMEB-V2"}
    assert all(c["allow_patterns"] for c in calls), "only the files the tasks need"
    assert not (tmp_path / "visdoc-tasks" / "visdoc-tasks.data.tar.gz").exists()
    assert not list(tmp_path.rglob("raw_videos")) and not list(tmp_path.rglob("*.zip"))
    frames = tmp_path / "video-tasks" / "frames"
    assert (frames / "video_ret" / "data" / "ziyan" / "video_retrieval" / "MSR-VTT" / "frames").is_dir()
    assert (frames / "video_qa" / "MVBench" / "action_antonym" / "action_antonym_0.mp4" / "0001.jpeg").is_file()
    assert (tmp_path / "image-tasks" / "images" / "ImageNet-1K" / "q0.jpg").is_file()  # MMEB/ moved up
    assert {f.task for f in report.fetched if f.task} == {t.name for t in PUBLISHED.values() if t.modality != "image"}
    calls.clear()
    again = get("mmeb-v2", tmp_path, download=fake_snapshot_download(trees, calls))
    assert len(calls) == 2 + 42, "every repo asked again: snapshot_download resumes what is missing"
    assert again.archives_unpacked == 0 and all(c.status == "found" for c in again.tasks)


def test_an_interrupted_download_resumes_on_the_rerun(tmp_path: Path, trees: dict) -> None:
    get("mmeb-v2-visdoc", tmp_path, download=fake_snapshot_download(trees))
    corpus = next((tmp_path / "visdoc-tasks" / "VisRAG_ArxivQA" / "corpus").glob("*.parquet"))
    corpus.unlink()  # cut short
    assert check_task(tmp_path, "VisRAG_ArxivQA").status != "found"
    report = get("mmeb-v2-visdoc", tmp_path, download=fake_snapshot_download(trees))
    assert corpus.is_file() and all(c.status == "found" for c in report.tasks)


def test_an_offline_download_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(**kwargs: object) -> str:
        raise OSError("We have no connection or you passed local_files_only")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    for name in ("mmeb-v2", "mmeb-train"):
        out = tmp_path / name
        result = CliRunner().invoke(data_app, ["get", name, "--out", str(out)])
        assert result.exit_code == 1 and "cannot download TIGER-Lab/MMEB-" in result.output
        assert "no connection" in result.output and "Traceback" not in result.output
        assert not out.exists()  # a failed first get leaves no empty folder behind
    (tmp_path / "mine").mkdir()  # a folder the user made stays, as do the files of an earlier get
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    for out in (tmp_path / "mine", tmp_path / "mmeb-v2-empty"):
        out.mkdir(exist_ok=True)
        assert CliRunner().invoke(data_app, ["get", "mmeb-v2", "--out", str(out)]).exit_code == 1
        assert out.is_dir()


def test_one_modality_fetches_only_its_repos(tmp_path: Path, trees: dict) -> None:
    calls: list[dict] = []
    report = get("mmeb-v2-visdoc", tmp_path, download=fake_snapshot_download(trees, calls))
    assert len(report.tasks) == 24 and all(c.status == "found" for c in report.tasks)
    assert calls[0]["allow_patterns"] == ["README.md"] and not (tmp_path / "video-tasks").exists()


def test_the_command_reports_missing_media_and_unknown_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: str) -> str:
        fake_train_snapshot(**kwargs)
        (Path(kwargs["local_dir"]) / "images_zip" / "DocVQA.zip").unlink()
        return kwargs["local_dir"]

    monkeypatch.setattr("huggingface_hub.snapshot_download", broken)
    result = CliRunner().invoke(app, ["get", "mmeb-train", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "2 of 4 media files" in result.output and "parquet files" in result.output
    with pytest.raises(ConfigError, match="unknown dataset"):
        get("mmeb-v3", tmp_path, download=fake_train_snapshot)
