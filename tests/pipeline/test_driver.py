"""The pipeline driver: stage folders numbered by stage, and an evaluation built as ``cocoa eval`` builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cocoa.core.errors import ConfigError
from cocoa.core.protocol import PROTOCOLS
from cocoa.pipeline import driver
from cocoa.pipeline.driver import EvalSection, load_pipeline


def test_the_eval_section_takes_what_cocoa_eval_takes_and_builds_the_same_encoder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def load_encoder(*args: Any) -> str:
        calls.append(args)
        return "encoder"

    def evaluate(encoder: str, data: Path, out: Path, **kwargs: Any) -> Any:
        assert encoder == "encoder"
        raise StopIteration(kwargs)

    monkeypatch.setattr("cocoa.evaluate.encoder.load_encoder", load_encoder)
    monkeypatch.setattr("cocoa.evaluate.runner.evaluate", evaluate)
    section = EvalSection.model_validate({"protocol": {"preset": "cocoa-release", "image": {"square": 352}},
                                          "frames": 4, "pack_tokens": 256, "workers": 1, "batch_size": 8})
    with pytest.raises(StopIteration) as stopped:
        driver.evaluate_model(tmp_path / "model", section, tmp_path / "data", tmp_path / "eval")
    [(model, workers, protocol, frames, pack_tokens)] = calls
    assert (model, workers, frames, pack_tokens) == (tmp_path / "model", 1, 4, 256)
    assert protocol.name == "cocoa-release" and protocol.image.square == 352
    assert protocol.embedding_token == PROTOCOLS["cocoa-release"].embedding_token
    assert stopped.value.value["batch_size"] == 8


def test_a_protocol_name_alone_is_refused_like_in_a_stage_recipe(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"stages": [{"recipe": "builtin:tiny/contrastive"}], "eval": {"protocol": "cocoa"}}))
    with pytest.raises(ConfigError, match=r"eval\.protocol"):
        load_pipeline(path)


def test_stage_folders_are_numbered_by_stage_and_never_shared(tmp_path: Path) -> None:
    mini, base = load_pipeline("builtin:pipelines/mini")
    assert [f.name for f in driver.stage_folders(mini, base, tmp_path)] == [
        "0-pretrain", "1-warmup", "2-bridge", "3-contrastive"]
    twice = driver.Pipeline.model_validate({"stages": [{"recipe": "builtin:tiny/contrastive"}] * 2})
    with pytest.raises(ConfigError, match="3-contrastive; give them distinct names"):
        driver.run_pipeline(twice, tmp_path, tmp_path / "out")
    named = driver.Pipeline.model_validate({"stages": [{"recipe": "builtin:tiny/contrastive", "name": "a"},
                                                       {"recipe": "builtin:tiny/contrastive", "name": "b"}]})
    assert [f.name for f in driver.stage_folders(named, tmp_path, tmp_path)] == ["3-a", "3-b"]
