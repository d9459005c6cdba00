"""The evaluator under embedding protocols: recorded in every output, part of the cache key and resume check."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cocoa.cli import app
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.recipe import load_recipe
from cocoa.stages import get_stage
from tests.helpers import build_benchmark, recipe_path


def test_another_protocol_re_encodes_and_the_same_one_resumes(model_dir: Path, tmp_path: Path) -> None:
    data = build_benchmark(tmp_path / "data")
    out, cache = tmp_path / "out", tmp_path / "cache"
    cocoa = evaluate(BatchEncoder.from_pretrained(model_dir, device="cpu"), data, out, cache_dir=cache,
                     show_progress=False)
    assert cocoa.protocol == PROTOCOLS["cocoa"].to_dict() and cocoa.encoded > 0
    score_file = json.loads((out / "Alpha_score.json").read_text())
    assert score_file["protocol"]["name"] == "cocoa"

    v1 = BatchEncoder.from_pretrained(model_dir, device="cpu", protocol=PROTOCOLS["vlm2vec-v1-low"])
    assert v1.fingerprint() != BatchEncoder.from_pretrained(model_dir, device="cpu").fingerprint()
    other = evaluate(v1, data, out, cache_dir=cache, show_progress=False)
    assert other.resumed == [] and other.encoded == cocoa.encoded, "nothing may come from the cocoa run"
    assert json.loads((out / "summary.json").read_text())["protocol"]["name"] == "vlm2vec-v1-low"
    assert json.loads((out / "Alpha_score.json").read_text())["protocol"]["image"]["square"] == 128
    assert "Protocol: `vlm2vec-v1-low`" in (out / "summary.md").read_text()

    again = evaluate(BatchEncoder.from_pretrained(model_dir, device="cpu", protocol=PROTOCOLS["vlm2vec-v1-low"]),
                     data, out, cache_dir=cache, show_progress=False)
    assert again.encoded == 0 and sorted(again.resumed) == sorted(other.evaluated)


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


def test_a_stage_records_the_protocol_its_recipe_builds_with(tmp_path: Path) -> None:
    base = [f"data.root={tmp_path}", f"train.output_dir={tmp_path / 'out'}"]
    recipe = load_recipe(recipe_path("contrastive"), [*base, "protocol.preset=cocoa-release",
                                                      "protocol.image={min_pixels: 3136, max_pixels: 50176}",
                                                      "contrastive.attention=causal"])
    spec = get_stage("contrastive").embedding_spec(recipe)
    want = PROTOCOLS["cocoa-release"].replace(image={"min_pixels": 3136, "max_pixels": 50176}, attention="causal")
    assert spec.protocol == want
    spec.save(tmp_path)
    assert EmbeddingSpec.load(tmp_path).protocol == want
    plain = load_recipe(recipe_path("contrastive"), [*base, "protocol.embedding_token=null"])
    assert get_stage("contrastive").embedding_spec(plain).protocol == PROTOCOLS["cocoa"].replace(embedding_token=None)
    assert get_stage("bridge").embedding_spec(load_recipe(recipe_path("bridge"), base)).protocol == PROTOCOLS["cocoa"]
