"""MMEB-V2 as published: `cocoa data get` -> `cocoa data check` -> `cocoa eval`, all 78 tasks, no task lost.

The Hub trees and archives come from tests/mmeb_v2_published.py (real file and folder names and
column types, each with its source), served by a fake ``snapshot_download``.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cocoa.data.check import check_published, check_task
from cocoa.data.cli import app as data_app
from cocoa.data.get import get
from cocoa.data.mmeb_v2 import PUBLISHED, locate
from cocoa.evaluate import evaluate
from cocoa.evaluate.registry import MMEB_V2
from tests.helpers import FakeEncoder
from tests.mmeb_v2_published import EXPECTED, SOURCES, fake_snapshot_download, hub_trees


@pytest.fixture(scope="module")
def trees() -> dict[str, dict[str, bytes]]:
    return hub_trees()


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory, trees: dict) -> Path:
    out = tmp_path_factory.mktemp("mmeb-v2")
    get("mmeb-v2", out, download=fake_snapshot_download(trees))
    return out


def copy_of(fetched: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(fetched, folder, ignore=shutil.ignore_patterns("pages"))
    return folder


def test_the_listing_covers_every_task_and_names_its_sources(trees: dict) -> None:
    assert len(PUBLISHED) == 78 and list(PUBLISHED) == MMEB_V2.names()
    assert set(EXPECTED) == set(PUBLISHED)
    for repo in trees:
        assert any(fnmatch.fnmatch(repo, key) for key in SOURCES), f"{repo} has no source"


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


def test_eval_scores_all_78_tasks_from_the_fetched_folder(fetched: Path, tmp_path: Path) -> None:
    summary = evaluate(FakeEncoder(), fetched, tmp_path / "out", benchmark="MMEB-V2", show_progress=False)
    assert summary.complete and summary.failed == {} and summary.overall.done == 78
    for name, (queries, _) in EXPECTED.items():
        record = json.loads((tmp_path / "out" / f"{name}_score.json").read_text())
        assert record["n_queries"] == queries, name
    assert set(summary.modalities) == {"image", "video", "visdoc"} and not summary.extra


def test_vlm2vec_local_and_repo_folder_names_are_tasks_not_other_datasets(fetched: Path, tmp_path: Path) -> None:
    data = copy_of(fetched, tmp_path)
    (data / "visdoc-tasks" / "ViDoRe_arxivqa").rename(data / "visdoc-tasks" / "arxivqa_test_subsampled_beir")
    (data / "visdoc-tasks" / "ViDoRe_esg_reports_v2_multilingual").rename(data / "visdoc-tasks" / "esg_reports_v2")
    (data / "visdoc-tasks").rename(data / "visdoc-tasks-data")
    (data / "visdoc-tasks-data").rename(data / "visdoc")
    (data / "visdoc").mkdir(exist_ok=True)
    (data / "visdoc-tasks").mkdir()
    (data / "visdoc").rename(data / "visdoc-tasks" / "data")  # VLM2Vec's visdoc-tasks/data/<repo name>/
    (data / "video-tasks" / "K700").rename(data / "video-tasks" / "Kinetics-700")
    (data / "video-tasks" / "SmthSmthV2").rename(data / "SmthSmthV2")  # at the top, as older copies
    (data / "image-tasks" / "MMEB_Test_Instruct").rename(data / "MMEB_Test_Instruct")  # a snapshot at the top
    checks = {c.name: c for c in check_published(data)}
    assert all(c.status == "found" for c in checks.values()), [c for c in checks.values() if c.status != "found"]
    assert checks["ViDoRe_arxivqa"].folder.endswith("visdoc-tasks/data/arxivqa_test_subsampled_beir")
    assert checks["K700"].folder.endswith("Kinetics-700") and checks["ImageNet-1K"].folder.endswith("MMEB_Test_Instruct")
    summary = evaluate(FakeEncoder(), data, tmp_path / "out", show_progress=False)
    assert summary.benchmark == "MMEB-V2" and summary.complete and not summary.extra and not summary.failed


def test_the_instruction_split_files_win_over_another_copy_of_an_image_task(fetched: Path, tmp_path: Path) -> None:
    data = copy_of(fetched, tmp_path)
    v1 = data / "image-tasks" / "ImageNet-1K" / "test-00000-of-00001.parquet"  # MMEB-V1's row form, no instructions
    v1.parent.mkdir()
    pq.write_table(pa.table({"qry_text": ["<|image_1|> x"], "qry_img_path": ["images/ImageNet-1K/q0.jpg"],
                             "tgt_text": [["a"]], "tgt_img_path": [[""]]}), v1)
    located = locate(data, PUBLISHED["ImageNet-1K"])
    assert located.folder.name == "MMEB_Test_Instruct" and v1 not in located.files
    (data / "image-tasks" / "MMEB_Test_Instruct").rename(tmp_path / "elsewhere")
    assert locate(data, PUBLISHED["ImageNet-1K"]).files == [v1]  # without it, the other copy


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


def test_the_hubs_parquet_conversion_and_a_bare_config_folder_are_read(fetched: Path, tmp_path: Path) -> None:
    data = copy_of(fetched, tmp_path)
    hmdb = data / "video-tasks" / "HMDB51"
    rows = [json.loads(line) for line in (hmdb / "data" / "test.jsonl").read_text().splitlines()]
    shutil.rmtree(hmdb)
    (hmdb / "default" / "test").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), hmdb / "default" / "test" / "0000.parquet")  # refs/convert/parquet
    (hmdb / "default" / "train").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:1]), hmdb / "default" / "train" / "0000.parquet")
    assert not (data / "video-tasks" / "EgoSchema" / "README.md").exists()  # Subset/ and MC/, no card
    assert [f.relative_to(hmdb).as_posix() for f in locate(data, PUBLISHED["HMDB51"]).files] == ["default/test/0000.parquet"]
    ego = locate(data, PUBLISHED["EgoSchema"]).files
    assert [f.relative_to(data / "video-tasks" / "EgoSchema").as_posix() for f in ego] == [
        "Subset/test-00000-of-00001.parquet"]
    youcook = locate(data, PUBLISHED["YouCook2"]).files
    assert [f.name for f in youcook] == ["val-00000-of-00001.parquet"], "val, never the test decoy beside it"
    assert check_task(data, "HMDB51").rows == EXPECTED["HMDB51"][0]


def test_the_eval_command_writes_the_summary_and_exits_1_when_a_task_fails(
        fetched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cocoa.evaluate import cli as eval_cli

    data = copy_of(fetched, tmp_path)
    shutil.rmtree(data / "video-tasks" / "frames" / "video_qa")
    monkeypatch.setattr(eval_cli, "load_encoder", lambda *args, **kwargs: FakeEncoder())
    out = tmp_path / "out"
    result = CliRunner().invoke(eval_cli.app, ["--model", str(tmp_path), "--data", str(data), "--out", str(out),
                                               "--benchmark", "MMEB-V2"])
    assert result.exit_code == 1, result.output
    qa = {"MVBench", "Video-MME", "NExTQA", "EgoSchema", "ActivityNetQA"}
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved["failed"]) == qa and saved["complete"] is False and saved["overall"]["done"] == 73
    assert "5 dataset(s) failed" in result.output and all(f"not scored: {name}" in result.output for name in qa)
