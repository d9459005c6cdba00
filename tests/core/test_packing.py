"""cocoa.core.packing: one pack_tokens check and command-line form for every section and command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cocoa.inference import server
from cocoa.model.packing import Packing


@pytest.mark.parametrize("value", [0, 1, -3, True, 2.5])
def test_a_row_of_fewer_than_two_tokens_is_refused_everywhere(value: object, tmp_path: Path) -> None:
    from cocoa.core.errors import ConfigError
    from cocoa.pipeline.driver import EvalSection
    from cocoa.train.config import TrainConfig

    with pytest.raises(ConfigError, match="pack_tokens"):
        Packing(value)  # type: ignore[arg-type]
    for section in (lambda v: TrainConfig(output_dir=str(tmp_path), epochs=1, pack_tokens=v),
                    lambda v: EvalSection(pack_tokens=v)):
        with pytest.raises(ValueError, match=r"pack_tokens|integer"):
            section(value)
        assert section(None).pack_tokens is None and section(64).pack_tokens == 64


def test_every_command_reads_pack_tokens_the_same_way(model_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``--pack-tokens``: 0 pads (``None``), N >= 2 packs, 1 is refused; ``serve`` packs 512 by default."""
    from cocoa.cli import app
    from cocoa.inference import cli as inference_cli

    calls: list[int | None] = []

    def load_embedder(model: Path, device: Any = None, pack_tokens: int | None = None) -> None:
        calls.append(pack_tokens)
        raise SystemExit(0)

    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: calls.append(kwargs["pack_tokens"]))
    monkeypatch.setattr(inference_cli, "load_embedder", load_embedder)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "text": "a cat"}\n')
    for command in (["serve", "--model", str(model_dir)],
                    ["encode", "--model", str(model_dir), "--input", str(rows), "--out", str(tmp_path / "x.npy")]):
        for extra, want in (([], 512 if command[0] == "serve" else None), (["--pack-tokens", "0"], None),
                            (["--pack-tokens", "64"], 64)):
            calls.clear()
            result = CliRunner().invoke(app, [*command, *extra])
            assert calls == [want], (command, extra, result.output)
        refused = CliRunner().invoke(app, [*command, "--pack-tokens", "1"])
        assert refused.exit_code == 2 and "neither 0 (pad)" in refused.output
