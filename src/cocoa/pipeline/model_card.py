"""The model card (``README.md``) of a trained model folder, in the Hub's conventions.

YAML front matter (library, pipeline tag, base model, tags) and, once an evaluation has run, its
scores in the Hub's ``model-index`` format, built with ``huggingface_hub``'s ``ModelCardData`` and
``EvalResult``; the body gives usage, the training stages, the embedding protocol and the score
table. ``cocoa train`` writes one into every model folder it saves and ``cocoa run`` rewrites the
last one with every stage and the evaluation. Publish a folder with huggingface_hub's CLI:
``hf upload ORG/NAME runs/mini/3-contrastive/model``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from cocoa.core.errors import DataError
from cocoa.core.files import write_text
from cocoa.core.hub import is_hub_id
from cocoa.core.spec import EmbeddingSpec
from cocoa.evaluate.report import summary_markdown
from cocoa.evaluate.summary import Summary
from cocoa.stages.sections import RecipeBase
from cocoa.train.community_batches import CommunityPlan, mined_by

CARD_FILE = "README.md"
TAGS = ["cocoa", "multimodal-embedding", "image-text-retrieval", "mmeb", "sentence-transformers",
        "feature-extraction"]


def base_model(stages: Sequence[RecipeBase]) -> str | None:
    """The Hub id the first stage started from (``None`` for a local folder or a tiny preset)."""
    path = stages[0].model.path if stages else None
    return path if path is not None and is_hub_id(path) else None


def eval_results(summary: Summary) -> list[EvalResult]:
    """The overall, per-split and per-meta-task scores as ``model-index`` entries."""
    groups = {"overall": summary.overall, **summary.splits, **summary.meta_tasks, **summary.modalities}
    return [EvalResult(task_type="feature-extraction", task_name="Multimodal embedding",
                       dataset_type=summary.benchmark.lower(), dataset_name=summary.benchmark,
                       metric_type="precision_at_1", metric_name=f"{name} (mean over {group.done} of {group.total} datasets)",
                       metric_value=round(group.score, 2))
            for name, group in groups.items() if group.score is not None]


def batches_cell(recipe: RecipeBase) -> str:
    """How a stage drew its batches (a random permutation, or the mined plan with its settings) and
    its hard negatives (mined by a plan, or the data's own)."""
    return _batches(recipe) + _negatives(recipe)


def _batches(recipe: RecipeBase) -> str:
    if recipe.data.batches is None:
        return "random"
    try:
        m = CommunityPlan.load(recipe.data.batches).manifest
    except DataError:
        return f"mined plan {recipe.data.batches} (unreadable now)"
    own = "".join(f"; {subset} [{p}, {p + n})" for subset, (p, n) in sorted((m.get("subsets") or {}).items()))
    return (f"mined (B3): teacher {str(m.get('teacher'))[:12]}, ranks [{m.get('p')}, "
            f"{int(m.get('p', 0)) + int(m.get('m', 0))}){own}, communities of {m.get('size')}")


def _negatives(recipe: RecipeBase) -> str:
    section = getattr(recipe, "contrastive", None)
    if section is None or not section.negatives:
        return ""
    most = f"up to {section.negatives} a query"
    if mined_by(recipe.data.root) is not None:
        return f"; hard negatives ({most}) mined into {recipe.data.root}"
    return f"; the data's own hard negatives ({most})"


def _stage_rows(stages: Sequence[RecipeBase]) -> list[str]:
    rows = ["| # | stage | starts from | length | batch | batches | lr | LoRA | packed rows |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n, recipe in enumerate(stages):
        t = recipe.train
        length = f"{t.max_steps} steps" if t.max_steps is not None else f"{t.epochs:g} epochs"
        source = recipe.model.path if n == 0 or recipe.model.path is None else f"stage {n - 1}"
        lora = f"r={t.lora.r}" if t.lora is not None else "full"
        rows.append(f"| {n} | {recipe.stage} | {source or 'tiny preset ' + str(recipe.model.tiny)} | {length} | "
                    f"{t.batch_size} | {batches_cell(recipe)} | {t.lr:g} | {lora} | {t.pack_tokens or 'no'} |")
    return rows


def model_card(name: str, stages: Sequence[RecipeBase], spec: EmbeddingSpec, summary: Summary | None = None
               ) -> ModelCard:
    """The card of a model trained by ``stages`` (in order), embedding under ``spec``, scored by ``summary``."""
    data = ModelCardData(library_name="sentence-transformers", pipeline_tag="feature-extraction",
                         base_model=base_model(stages), tags=TAGS, model_name=name,
                         eval_results=eval_results(summary) if summary is not None else None)
    body = [
        f"# {name}", "",
        "A multimodal embedding model (text, images and video into one space) trained with cocoa on the "
        "CoCoA recipe: bidirectional reconstruction warm-up, EOS-bridged reconstruction, then InfoNCE on "
        "the L2-normalised EOS state.", "",
        "## Usage", "", "```python", "from cocoa.inference.embedder import Embedder", "",
        f'model = Embedder.from_pretrained("{name}")',
        'vectors = model.encode(["a red dress", {"image": "photo.jpg"}])  # float32, L2-normalised', "```", "",
        "sentence-transformers: `SentenceTransformer(folder, trust_remote_code=True)`.", "",
        "## Training", "", *_stage_rows(stages), "",
        "## Embedding protocol", "", "```json", json.dumps(spec.embedding(), indent=2), "```", "",
    ]
    if summary is not None:
        table = summary_markdown(summary).splitlines()
        if table and table[0].startswith("# "):
            table[0] = "### " + table[0][2:]
        body += ["## Evaluation", "", *table, ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def write_model_card(folder: Path, name: str, stages: Sequence[RecipeBase], spec: EmbeddingSpec,
                     summary: Summary | None = None) -> Path:
    """Write ``folder/README.md`` atomically; returns its path."""
    path = Path(folder) / CARD_FILE
    write_text(path, str(model_card(name, stages, spec, summary)))
    return path
