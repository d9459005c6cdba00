"""cocoa.evaluate.report: the side-by-side comparison of two summaries."""

from __future__ import annotations

from typer.testing import CliRunner

from cocoa.evaluate import cli
from cocoa.evaluate.registry import Benchmark, DatasetInfo
from cocoa.evaluate.report import write_reports
from cocoa.evaluate.summary import summarize

runner = CliRunner()


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
