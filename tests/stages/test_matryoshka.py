"""Matryoshka: the multi-width loss by brute force, width validation, and one truncation everywhere."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cocoa.core.matryoshka import validate_dims
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.collate import Preprocessor
from cocoa.data.items import Item
from cocoa.errors import ConfigError
from cocoa.evaluate import cli as eval_cli
from cocoa.evaluate.runner import evaluate
from cocoa.evaluate.widths import WIDTHS_FILE, evaluate_widths, width_dir
from cocoa.inference.cli import encode, index_app
from cocoa.inference.embedder import Embedder
from cocoa.inference.encoder import Encoder
from cocoa.inference.index import VectorIndex
from cocoa.inference.server import create_app
from cocoa.integrations.st_layout import MODULES_FILE
from cocoa.losses.contrastive import distributed_info_nce, matryoshka_info_nce, place_negatives
from cocoa.recipe import load_recipe
from cocoa.stages import get_stage
from cocoa.stages.contrastive import (
    ContrastiveBuilder,
    ContrastiveConfig,
    ContrastiveLoss,
    EmbeddingObjective,
    MatryoshkaConfig,
)
from cocoa.train.config import TrainConfig
from cocoa.train.distributed import DistInfo
from cocoa.train.steps import GradCacheStep
from cocoa.train.trainer import Trainer
from tests.helpers import EVAL_DATASET, make_backbone, pairs, recipe_path, stage_overrides

WIDTHS = (32, 64)
HIDDEN = 96  # the tiny preset's hidden size


def brute_info_nce(q: np.ndarray, t: np.ndarray, temperature: float, neg: np.ndarray | None = None,
                   mask: np.ndarray | None = None) -> float:
    """Mean over queries of -log softmax(target i) with every target and every present negative as candidates."""
    total = 0.0
    for i in range(len(q)):
        candidates = list(t) + ([] if neg is None else [neg[j] for j in range(len(neg)) if mask is None or mask[j]])
        logits = [float(q[i] @ c) / temperature for c in candidates]
        top = max(logits)
        total -= logits[i] - (top + math.log(sum(math.exp(x - top) for x in logits)))
    return total / len(q)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_matryoshka(q: np.ndarray, t: np.ndarray, temperature: float, dims: list[int], weights: list[float],
                     neg: np.ndarray | None = None, mask: np.ndarray | None = None) -> float:
    return sum(w * brute_info_nce(unit(q[:, :d]), unit(t[:, :d]), temperature,
                                  None if neg is None else unit(neg[:, :d]), mask)
               for d, w in zip(dims, weights, strict=True))


@pytest.mark.parametrize("with_negatives", [False, True])
def test_loss_is_the_weighted_sum_of_per_width_info_nce(with_negatives: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    q, t, neg = (torch.nn.functional.normalize(torch.randn(5, 12, generator=gen, dtype=torch.float64), dim=-1)
                 for _ in range(3))
    mask = torch.tensor([True, False, True, True, False])
    dims, weights, temperature = [3, 7, 12], [0.5, 1.0, 2.0], 0.1
    args = (neg, mask) if with_negatives else (None, None)
    got = matryoshka_info_nce(q, t, temperature, dims, weights, *args)
    want = brute_matryoshka(q.numpy(), t.numpy(), temperature, dims, weights,
                            *(a.numpy() if a is not None else None for a in args))
    assert float(got) == pytest.approx(want, rel=1e-6)
    loss, report = distributed_info_nce(q, t, temperature, *args, widths=(dims, weights))
    assert float(loss) == pytest.approx(want, rel=1e-6) and float(report) == pytest.approx(want, rel=1e-6)


def test_trainer_step_reports_the_brute_force_loss_with_gradcache(image_dir: Path, tmp_path: Path) -> None:
    backbone = make_backbone()
    dims, weights = [16, 48, HIDDEN], [0.25, 0.5, 1.0]
    config = ContrastiveConfig(temperature=0.05, hard_negatives=True,
                               matryoshka=MatryoshkaConfig(dims=dims, weights=weights))
    objective = EmbeddingObjective(backbone.model, PROTOCOLS["cocoa"])
    examples = pairs(image_dir)
    batch = ContrastiveBuilder(Preprocessor(backbone, 128), hard_negatives=True, chunk=3)(
        examples, np.random.default_rng(0))
    assert len(batch.chunks) > 1
    with torch.no_grad():
        emb = torch.cat([objective(c) for c in batch.chunks]).double()
    n = batch.n_queries
    neg, mask = place_negatives(emb[2 * n:], batch.negative_of, n)
    want = brute_matryoshka(emb[:n].numpy(), emb[n:2 * n].numpy(), 0.05, dims, weights, neg.numpy(), mask.numpy())
    trainer = Trainer(objective, None, GradCacheStep(ContrastiveLoss(config)), 1,  # type: ignore[arg-type]
                      TrainConfig(output_dir=str(tmp_path), max_steps=1), DistInfo(0, 1, 0, torch.device("cpu")),
                      tmp_path)
    assert trainer.compute(batch)["loss"] == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize(("sets", "message"), [
    (["contrastive.matryoshka.dims=[64, 32]"], "strictly ascending"),
    (["contrastive.matryoshka.dims=[32, 32]"], "strictly ascending"),
    (["contrastive.matryoshka.dims=[0, 32]"], "positive integers"),
    (["contrastive.matryoshka.dims=[]"], "at least one width"),
    (["contrastive.matryoshka.dims=[16, 32]", "contrastive.matryoshka.weights=[1.0]"], "one weight per width"),
    (["contrastive.matryoshka.dims=[16, 32]", "contrastive.matryoshka.weights=[1.0, 0]"], "positive"),
    (["contrastive.matryoshka.weights=[1.0]"], "dims"),
])
def test_recipe_widths_are_validated_naming_the_field(tmp_path: Path, sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe_path("contrastive"), [*stage_overrides("contrastive", tmp_path, tmp_path), *sets])
    assert "  contrastive.matryoshka" in str(info.value) and message in str(info.value)


def test_widths_above_the_hidden_size_are_refused_before_training(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_path("contrastive"), [*stage_overrides("contrastive", tmp_path, tmp_path),
                                                      f"contrastive.matryoshka.dims=[32, {HIDDEN + 1}]"])
    backbone = make_backbone()
    with pytest.raises(ConfigError, match=f"contrastive.matryoshka.dims: width {HIDDEN + 1} is larger than the "
                                          f"model's hidden size {HIDDEN}"):
        get_stage("contrastive").parts(recipe, backbone, backbone.model)


def test_spec_records_widths_only_when_set(tmp_path: Path) -> None:
    assert EmbeddingSpec().to_dict() == {"protocol": PROTOCOLS["cocoa"].to_dict(), "max_len": 4096}
    EmbeddingSpec(matryoshka_dims=WIDTHS).save(tmp_path)
    assert EmbeddingSpec.load(tmp_path).matryoshka_dims == WIDTHS
    with pytest.raises(ConfigError, match="matryoshka_dims: widths must be strictly ascending"):
        EmbeddingSpec(matryoshka_dims=(64, 32))
    with pytest.raises(ConfigError, match="matryoshka_dims: width 128 is larger"):
        Encoder(make_backbone(), EmbeddingSpec(matryoshka_dims=(32, 128)))
    assert validate_dims([8, HIDDEN], "dims", HIDDEN) == (8, HIDDEN)


@pytest.fixture(scope="module")
def matryoshka_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("matryoshka-model")
    make_backbone().save(folder)
    EmbeddingSpec(matryoshka_dims=WIDTHS).save(folder)
    return folder


@pytest.fixture(scope="module")
def embedder(matryoshka_dir: Path) -> Embedder:
    return Embedder.from_pretrained(matryoshka_dir, device="cpu")


TEXTS = ["a red dress", "an ankle boot", "a sneaker next to a bag", "a white background"]


def test_encode_truncates_and_renormalises(embedder: Embedder, image_dir: Path) -> None:
    inputs = [*TEXTS, image_dir / "a.png"]
    full = embedder.encode(inputs)
    assert embedder.widths == (*WIDTHS, HIDDEN)
    for width in WIDTHS:
        got = embedder.encode(inputs, dimensions=width)
        assert got.shape == (len(inputs), width) and got.dtype == np.float32
        np.testing.assert_allclose(got, unit(full[:, :width]), atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(embedder.encode(inputs, dimensions=HIDDEN), full)
    assert embedder.encode([], dimensions=32).shape == (0, 32)
    with pytest.raises(ConfigError, match="dimensions=50 is not supported by this model; choose one of 32, 64, 96"):
        embedder.encode(TEXTS, dimensions=50)


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("encode")(encode)
    app.add_typer(index_app, name="index")
    return app


def test_cli_encode_index_and_search_use_the_same_truncation(embedder: Embedder, matryoshka_dir: Path,
                                                            tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": t, "text": t}) + "\n" for t in TEXTS))
    runner, model = CliRunner(), ["--model", str(matryoshka_dir)]
    result = runner.invoke(_cli(), ["encode", *model, "--input", str(rows), "--out", str(tmp_path / "v.npy"),
                                    "--dimensions", "32"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), embedder.encode(TEXTS, dimensions=32), atol=1e-6)
    bad = runner.invoke(_cli(), ["encode", *model, "--input", str(rows), "--out", str(tmp_path / "w.npy"),
                                 "--dimensions", "50"])
    assert bad.exit_code == 1 and "dimensions=50 is not supported" in bad.output

    result = runner.invoke(_cli(), ["index", "build", *model, "--input", str(rows), "--out", str(tmp_path / "idx"),
                                    "--dimensions", "32"])
    assert result.exit_code == 0, result.output
    index = VectorIndex.load(tmp_path / "idx")
    assert index.dim == 32
    result = runner.invoke(_cli(), ["index", "search", *model, "--index", str(tmp_path / "idx"),
                                    "--query", "red dress", "-k", "4", "--json"])
    assert result.exit_code == 0, result.output
    want = index.search(embedder.encode("red dress", dimensions=32), 4)[0]
    got = json.loads(result.stdout)
    assert [h["id"] for h in got] == [h.id for h in want]
    np.testing.assert_allclose([h["score"] for h in got], [h.score for h in want], atol=1e-5)


def test_server_dimensions_parameter(embedder: Embedder) -> None:
    index = VectorIndex.build(embedder.encode(TEXTS, dimensions=32), TEXTS, fingerprint=embedder.fingerprint)
    app = create_app(embedder, model_name="m", index=index)
    with TestClient(app) as client:
        for width in (*WIDTHS, None):
            body = {"model": "m", "input": TEXTS, **({} if width is None else {"dimensions": width})}
            response = client.post("/v1/embeddings", json=body)
            assert response.status_code == 200, response.text
            got = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
            np.testing.assert_allclose(got, embedder.encode(TEXTS, dimensions=width), atol=1e-6)
        for bad in (50, 0, HIDDEN + 1):
            response = client.post("/v1/embeddings", json={"model": "m", "input": "x", "dimensions": bad})
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["code"] == "unsupported_dimensions" and "choose one of 32, 64, 96" in error["message"]
        hits = client.post("/v1/search", json={"text": "red dress", "k": 2}).json()["data"]
        want = index.search(embedder.encode("red dress", dimensions=32), 2)[0]
        assert [h["id"] for h in hits] == [h.id for h in want]
        assert client.get("/health").json()["dimensions"] == [*WIDTHS, HIDDEN]
    odd = VectorIndex.build(embedder.encode(TEXTS)[:, :40], TEXTS)
    with pytest.raises(ConfigError, match="index has dim 40"):
        create_app(embedder, model_name="m", index=odd)


class CountingEncoder:
    """An encoder that records how many items it was asked to encode."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder, self.encoded = encoder, 0

    def encode_items(self, items: Sequence[Item], *, batch_size: int = 32,
                     show_progress: bool = False) -> np.ndarray:
        self.encoded += len(items)
        return self.encoder.encode_items(items, batch_size=batch_size)

    def fingerprint(self) -> str:
        return self.encoder.fingerprint()

    def item_length(self, item: Item) -> int:
        return self.encoder.item_length(item)


def test_evaluation_per_width_encodes_each_item_once(matryoshka_dir: Path, mini_dir: Path, tmp_path: Path) -> None:
    encoder = Encoder.from_pretrained(matryoshka_dir, device="cpu")
    counting = CountingEncoder(encoder)
    summaries = evaluate_widths(counting, [32, HIDDEN], mini_dir, tmp_path / "w", [EVAL_DATASET], batch_size=16,
                                show_progress=False)
    plain = evaluate(encoder, mini_dir, tmp_path / "plain", [EVAL_DATASET], batch_size=16, show_progress=False)
    items = summaries[HIDDEN].encoded
    assert counting.encoded == items == plain.encoded > 0
    assert summaries[HIDDEN].datasets[EVAL_DATASET].score == plain.datasets[EVAL_DATASET].score
    assert (width_dir(tmp_path / "w", 32) / f"{EVAL_DATASET}_score.json").is_file()
    written = json.loads((tmp_path / "w" / WIDTHS_FILE).read_text())
    assert written["32"]["overall"] == summaries[32].overall.score
    with pytest.raises(ConfigError, match="dims: width 97 is larger"):
        evaluate_widths(counting, [HIDDEN + 1], mini_dir, tmp_path / "too-wide", [EVAL_DATASET],
                        show_progress=False)


def test_eval_cli_dims(matryoshka_dir: Path, mini_dir: Path, tmp_path: Path) -> None:
    base = ["--model", str(matryoshka_dir), "--data", str(mini_dir), "--out", str(tmp_path / "e"),
            "--datasets", EVAL_DATASET, "--batch-size", "16"]
    result = CliRunner().invoke(eval_cli.app, [*base, "--dims", "32,96"])
    assert result.exit_code == 0, result.output
    assert "score per embedding width" in result.output and (tmp_path / "e" / "dim-96").is_dir()
    bad = CliRunner().invoke(eval_cli.app, [*base, "--dims", "32,x"])
    assert bad.exit_code != 0 and "--dims must be comma-separated integers" in bad.output


def test_benchmark_script_trains_and_scores_every_width(model_dir: Path, mini_dir: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "matryoshka_benchmark", Path(__file__).parents[2] / "benchmarks" / "experiments" / "matryoshka.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sets = [s for s in stage_overrides("contrastive", mini_dir, tmp_path, steps=2)
            if not s.startswith(("data.root=", "train.output_dir="))]
    scores = bench.run(mini_dir, model_dir, tmp_path, [32, HIDDEN], None, 0, sets, [EVAL_DATASET], 16)
    assert set(scores) == {"plain", "matryoshka"} and all(set(s) == {32, HIDDEN} for s in scores.values())
    assert EmbeddingSpec.load(tmp_path / "matryoshka" / "model").matryoshka_dims == (32, HIDDEN)
    assert EmbeddingSpec.load(tmp_path / "plain" / "model").matryoshka_dims is None
    assert (tmp_path / "plain" / "model" / MODULES_FILE).is_file()  # trained models load in sentence-transformers
    assert "| 32 |" in (tmp_path / "matryoshka.md").read_text()
