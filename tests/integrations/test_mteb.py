"""The mteb wrapper embeds like ``Embedder.encode`` and runs an mteb image task built here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cocoa.core.errors import ConfigError, DataError
from cocoa.inference.embedder import Embedder

mteb = pytest.importorskip("mteb")

from datasets import Dataset  # noqa: E402
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.types import PromptType  # noqa: E402

from cocoa.core.spec import EmbeddingSpec  # noqa: E402
from cocoa.integrations.mteb import CocoaMtebEncoder  # noqa: E402
from tests.helpers import make_backbone  # noqa: E402

CAPTIONS = ["a noisy square", "another noisy square", "a large noisy square", "a medium noisy square"]
IMAGES = "abcd"


QUERY_PROMPT = "Find the image this caption describes."


def tiny_task(image_dir: Path) -> AbsTaskRetrieval:
    """Text-to-image retrieval: caption i should retrieve image i of ``image_dir``."""

    class TinyTextToImage(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name="CocoaTinyT2I", type="Any2AnyRetrieval", main_score="ndcg_at_10", category="t2i",
            modalities=["text", "image"], description="Four captions against four images, built in a test.",
            reference="https://github.com/embeddings-benchmark/mteb", dataset={"path": "NA", "revision": "NA"},
            eval_splits=["test"], eval_langs=["eng-Latn"], date=("2026-01-01", "2026-01-01"), dialect=[],
            domains=[], task_subtypes=[], license="cc-by-4.0", annotations_creators="derived",
            sample_creation="found", bibtex_citation="", prompt={"query": QUERY_PROMPT})

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            images = [Image.open(image_dir / f"{name}.png").convert("RGB") for name in IMAGES]
            split = RetrievalSplitData(
                queries=Dataset.from_dict({"id": [f"q{i}" for i in range(4)], "text": CAPTIONS}),
                corpus=Dataset.from_dict({"id": [f"d{i}" for i in range(4)], "image": images}),
                relevant_docs={f"q{i}": {f"d{i}": 1} for i in range(4)}, top_ranked=None)
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return TinyTextToImage()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mteb-model")
    make_backbone().save(out)
    EmbeddingSpec(dims=(32,)).save(out)
    return out


def test_encode_equals_embedder(folder: Path, image_dir: Path) -> None:
    model = CocoaMtebEncoder(folder, device="cpu")
    embedder = Embedder.from_pretrained(folder, device="cpu")
    pil = [Image.open(image_dir / f"{n}.png").convert("RGB") for n in "ab"]
    batches = [{"text": ["what is this?", "a square"], "image": pil}, {"text": ["boot"]}]
    task = tiny_task(image_dir)
    got = model.encode(batches, task_metadata=task.metadata, hf_split="test", hf_subset="default",
                       prompt_type=PromptType.query)
    instruction = model.instruction(task.metadata, PromptType.query)
    assert instruction == QUERY_PROMPT, "the task's own prompt for queries"
    rows = [{"text": "what is this?", "image": pil[0]}, {"text": "a square", "image": pil[1]}, "boot"]
    np.testing.assert_allclose(got, embedder.encode(rows, instruction=instruction), atol=1e-6)
    documents = model.encode([{"image": pil}], task_metadata=task.metadata, hf_split="test", hf_subset="default",
                             prompt_type=PromptType.document)
    np.testing.assert_allclose(documents, embedder.encode(pil), atol=1e-6)
    cut = CocoaMtebEncoder(folder, device="cpu", dim=32)
    np.testing.assert_allclose(cut.encode([{"image": pil}], task_metadata=task.metadata, hf_split="test",
                                          hf_subset="default", prompt_type=PromptType.document),
                               embedder.encode(pil, dim=32), atol=1e-6)
    assert cut.mteb_model_meta.embed_dim == 32
    with pytest.raises(ConfigError, match="dim=50 is not supported"):
        CocoaMtebEncoder(folder, device="cpu", dim=50)
    with pytest.raises(DataError, match="one PIL image per input"):
        model.encode([{"image": [pil]}], task_metadata=task.metadata, hf_split="test", hf_subset="default")


def test_mteb_runs_a_tiny_image_task(folder: Path, image_dir: Path) -> None:
    """mteb's NDCG@10 equals the one computed by hand from ``Embedder.encode`` (one relevant image per caption)."""
    model = CocoaMtebEncoder(folder, device="cpu")
    task = tiny_task(image_dir)
    result = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    [task_result] = result.task_results
    embedder = Embedder.from_pretrained(folder, device="cpu")
    queries = embedder.encode(CAPTIONS, instruction=model.instruction(task.metadata, PromptType.query))
    images = embedder.encode([Image.open(image_dir / f"{name}.png").convert("RGB") for name in IMAGES])
    scores = queries @ images.T
    ranks = [1 + int(np.sum(scores[i] > scores[i, i])) for i in range(len(CAPTIONS))]
    assert task_result.task_name == "CocoaTinyT2I"
    assert task_result.get_score() == pytest.approx(np.mean([1 / np.log2(r + 1) for r in ranks]), abs=1e-4)
