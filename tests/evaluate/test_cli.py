"""``cocoa eval`` and ``cocoa eval compare`` through typer."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cocoa.evaluate import cli
from cocoa.evaluate.registry import Benchmark, DatasetInfo
from cocoa.evaluate.report import write_reports
from cocoa.evaluate.summary import summarize
from tests.helpers import FakeEncoder, build_benchmark

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


def test_compare_shows_deltas(tmp_path) -> None:
    bench = Benchmark("Tiny", (DatasetInfo("Alpha", "classification", "IND"),
                               DatasetInfo("Beta", "retrieval", "OOD")))
    write_reports(summarize(bench, {"Alpha": 50.0, "Beta": 20.0}, "fp-a"), tmp_path / "base")
    write_reports(summarize(bench, {"Alpha": 62.5, "Beta": 10.0}, "fp-b"), tmp_path / "new")
    result = runner.invoke(cli.app, ["compare", str(tmp_path / "base"), str(tmp_path / "new" / "summary.json")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("Alpha" in line and "+12.50" in line for line in lines)
    assert any("Beta" in line and "-10.00" in line for line in lines)
    assert any("Overall" in line and "+1.25" in line for line in lines)
    assert "base" in result.output and "new" in result.output
