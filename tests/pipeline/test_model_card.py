"""Model cards: `cocoa train` writes one into the model folder, `cocoa run` rewrites the last one with
every stage and the evaluation in the Hub's model-index format; both parse with huggingface_hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard

from cocoa.core.spec import EmbeddingSpec
from cocoa.pipeline.driver import Pipeline, StageEntry, run_pipeline
from cocoa.pipeline.model_card import model_card
from cocoa.recipe import builtin, load_recipe
from tests.helpers import stage_overrides


def test_a_run_leaves_a_card_with_its_stages_and_scores(mini_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = ["model.path=null", "model.tiny=tiny"]
    pipeline = Pipeline(
        name="card", data_root=str(mini_dir),
        stages=[StageEntry(recipe="builtin:tiny/pretrain", set=[*stage_overrides("pretrain", mini_dir, out / "0-pretrain", 2), *sets]),
                StageEntry(recipe="builtin:tiny/contrastive",
                           set=stage_overrides("contrastive", mini_dir, out / "3-contrastive", 2))],
        eval={"data": str(mini_dir), "datasets": ["FashionMNIST", "SceneI2T"], "batch_size": 16})
    summary = run_pipeline(pipeline, Path(builtin("pipelines/mini")).parent, out)
    first = ModelCard.load(out / "0-pretrain" / "model" / "README.md")
    assert first.data.library_name == "sentence-transformers" and not first.data.eval_results
    card = ModelCard.load(out / "3-contrastive" / "model" / "README.md")
    assert card.data.pipeline_tag == "feature-extraction" and "cocoa" in card.data.tags
    assert card.data.base_model is None  # a tiny preset, not a Hub model
    results = {r.metric_name.split(" ")[0]: r.metric_value for r in card.data.eval_results}
    assert results["overall"] == round(summary["overall"]["score"], 2)
    assert all(r.dataset_name == summary["benchmark"] for r in card.data.eval_results)
    assert "| 1 | contrastive | stage 0 |" in card.text and "## Embedding protocol" in card.text
    assert "FashionMNIST" in card.text  # the score table


def test_a_hub_base_model_is_named_in_the_card(tmp_path: Path) -> None:
    recipe = load_recipe(builtin("paper/warmup"), [f"data.root={tmp_path}", f"train.output_dir={tmp_path}"])
    card = model_card("org/my-embedder", [recipe], EmbeddingSpec())
    parsed = ModelCard(str(card))
    assert parsed.data.base_model == "Qwen/Qwen2-VL-2B-Instruct" and parsed.data.model_name == "org/my-embedder"
    assert 'Embedder.from_pretrained("org/my-embedder")' in parsed.text
