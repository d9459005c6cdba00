"""cocoa.evaluate.cli (`cocoa eval`): options, custom and MMEB-V2 folders, failures and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.core.protocol import PROTOCOLS
from cocoa.evaluate import cli
from cocoa.evaluate import cli as eval_cli
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import (
    EVAL_DATASET,
    FakeEncoder,
    brute_force_p1,
    build_benchmark,
    build_custom,
    build_visdoc,
    copy_of,
    write_images,
)
from tests.helpers import INSTRUCT_CASES as CASES
from tests.helpers import write_instruct_split as write_split

runner = CliRunner()


def test_eval_command_runs_and_resumes(tmp_path, monkeypatch) -> None:
    data = build_benchmark(tmp_path / "data")
    monkeypatch.setattr(cli, "load_encoder", lambda model_dir, workers=0, protocol=None, frames=None, pack_tokens=None: FakeEncoder())
    args = ["--model", str(tmp_path / "model"), "--data", str(data), "--out", str(tmp_path / "out"),
            "--datasets", "Alpha,Gamma", "--batch-size", "2"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert "PARTIAL" in result.output
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(saved["datasets"]) == {"Alpha", "Gamma"}
    assert saved["complete"] is False
    again = runner.invoke(cli.app, args)
    assert again.exit_code == 0, again.output
    assert "encoded 0 items" in again.output


def test_eval_command_reports_bad_input(tmp_path, monkeypatch) -> None:
    data = build_benchmark(tmp_path / "data")
    monkeypatch.setattr(cli, "load_encoder", lambda model_dir, workers=0, protocol=None, frames=None, pack_tokens=None: FakeEncoder())
    result = runner.invoke(cli.app, ["--model", "m", "--data", str(data), "--out", str(tmp_path / "o"),
                                     "--datasets", "Nope"])
    assert result.exit_code == 1
    assert "'Nope' is not a dataset of Tiny" in result.output
    assert runner.invoke(cli.app, ["--data", str(data)]).exit_code != 0


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


def test_cocoa_eval_runs_the_tiny_model_on_visdoc_and_instruction_split_folders(tmp_path, model_dir) -> None:
    data = tmp_path / "data"
    build_visdoc(data / "VisRAG_ChartQA", seed=4, pages=5, queries=4)
    write_images(data / "images", "0.png", "1.png", "2.png")
    for name in ("OK-VQA", "WebQA"):
        write_split(data / name / "test-00000-of-00001.parquet", [CASES[name][0]] * 2)
    result = CliRunner().invoke(cli.app, ["--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "o"),
                                          "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert saved["benchmark"] == "MMEB-V2"
    assert set(saved["datasets"]) == {"OK-VQA", "WebQA", "VisRAG_ChartQA"}
    assert saved["datasets"]["VisRAG_ChartQA"]["metric"] == "ndcg@5"
    assert all(0 <= d["score"] <= 100 for d in saved["datasets"].values())


def test_cli_scores_a_custom_folder_with_dataset_info(tmp_path, monkeypatch) -> None:
    rows = build_custom(tmp_path / "mine")
    monkeypatch.setattr(cli, "load_encoder", lambda model_dir, workers=0, protocol=None, frames=None, pack_tokens=None: FakeEncoder(dim=5))
    args = ["--model", "m", "--data", str(tmp_path / "mine"), "--out", str(tmp_path / "out"),
            "--dataset-info", "Misc=grounding:IND"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected = brute_force_p1(FakeEncoder(dim=5), rows["Misc"], tmp_path / "mine" / "images")
    assert saved["datasets"]["Misc"] == {"score": pytest.approx(expected), "meta_task": "grounding", "split": "IND",
                                         "metric": "hit@1"}
    bad = runner.invoke(cli.app, [*args[:6], "--datasets", "Nope"])
    assert bad.exit_code == 1 and "dataset 'Nope' not found in the data folder" in bad.output
    wrong = runner.invoke(cli.app, [*args[:6], "--dataset-info", "Misc=ranking"])
    assert wrong.exit_code == 1 and "meta_task must be one of" in wrong.output


def test_eval_command_takes_a_protocol_and_checkpoints_without_cocoa_json(model_dir: Path, tmp_path: Path) -> None:
    data = build_benchmark(tmp_path / "data")
    foreign = tmp_path / "vlm2vec-checkpoint"
    foreign.mkdir()
    for file in model_dir.iterdir():
        if file.name != "cocoa.json":
            (foreign / file.name).write_bytes(file.read_bytes())
    result = CliRunner().invoke(app, ["eval", "--model", str(foreign), "--data", str(data), "--out",
                                      str(tmp_path / "out"), "--protocol", "vlm2vec-v2"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["protocol"] == \
        PROTOCOLS["vlm2vec-v2"].to_dict()
    bad = CliRunner().invoke(app, ["eval", "--model", str(foreign), "--data", str(data), "--out",
                                   str(tmp_path / "bad"), "--protocol", "vlm2vec"])
    assert bad.exit_code != 0 and "unknown protocol 'vlm2vec'" in bad.output


def test_frames_option_samples_more_frames_and_records_it(evaluated: tuple[Path, Path, BatchEncoder], model_dir: Path,
                                                          tmp_path: Path) -> None:
    data, out, _ = evaluated
    result = CliRunner().invoke(cli.app, ["--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "o"),
                                          "--datasets", "Video-MME", "--frames", "2", "--benchmark", "MMEB-V2"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "Video-MME_score.json").read_text())
    assert record["protocol"]["video"]["frames"] == 2
    assert record["fingerprint"] != json.loads((out / "Video-MME_score.json").read_text())["fingerprint"]


def test_eval_cli_dims(matryoshka_dir: Path, mini_dir: Path, tmp_path: Path) -> None:
    base = ["--model", str(matryoshka_dir), "--data", str(mini_dir), "--out", str(tmp_path / "e"),
            "--datasets", EVAL_DATASET, "--batch-size", "16"]
    result = CliRunner().invoke(eval_cli.app, [*base, "--dims", "32,96"])
    assert result.exit_code == 0, result.output
    assert "score per embedding width" in result.output and (tmp_path / "e" / "dim-96").is_dir()
    bad = CliRunner().invoke(eval_cli.app, [*base, "--dims", "32,x"])
    assert bad.exit_code != 0 and "--dims must be comma-separated integers" in bad.output
