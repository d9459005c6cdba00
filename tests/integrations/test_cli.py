"""cocoa.integrations.cli (`cocoa export`): sentence-transformers files and the vLLM export."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.core.spec import EmbeddingSpec
from cocoa.integrations.st_layout import MODULES_FILE
from tests.helpers import checkpoint_with_spec as checkpoint


def test_export_commands(model_dir: Path, tmp_path: Path) -> None:
    folder = checkpoint(model_dir, tmp_path, EmbeddingSpec())
    runner = CliRunner()
    result = runner.invoke(app, ["export", "sentence-transformers", "--model", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / MODULES_FILE).is_file()
    refused = runner.invoke(app, ["export", "vllm", "--model", str(folder), "--out", str(tmp_path / "v")])
    assert refused.exit_code == 1 and "--allow-causal-mismatch" in refused.output
    forced = runner.invoke(app, ["export", "vllm", "--model", str(folder), "--out", str(tmp_path / "v"),
                                 "--allow-causal-mismatch"])
    assert forced.exit_code == 0 and "NOT exact" in forced.output
