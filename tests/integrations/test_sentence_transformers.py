"""A cocoa checkpoint loads with ``SentenceTransformer`` and gives the vectors of ``Embedder.encode``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cocoa.core.errors import ConfigError, DataError
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.inference.embedder import Embedder
from cocoa.integrations.st_layout import write_sentence_transformers_files

st = pytest.importorskip("sentence_transformers")


def test_sentence_transformer_equals_embedder(folder: Path, image_dir: Path) -> None:
    model = st.SentenceTransformer(str(folder), device="cpu", trust_remote_code=True)
    embedder = Embedder.from_pretrained(folder, device="cpu")
    pil = Image.open(image_dir / "c.png").convert("RGB")
    inputs = ["a photo of a red dress on a white background", "boot", pil,
              {"text": "what is in the image?", "image": str(image_dir / "d.png")}]
    got = model.encode(inputs, batch_size=3)
    np.testing.assert_allclose(got, embedder.encode(inputs), atol=1e-5)
    assert model.get_embedding_dimension() == embedder.dim
    prompted = model.encode(inputs, prompt="Find it.", batch_size=2)
    np.testing.assert_allclose(prompted, embedder.encode(inputs, instruction="Find it."), atol=1e-5)
    cut = model.encode(inputs, truncate_dim=32, normalize_embeddings=True)
    np.testing.assert_allclose(cut, embedder.encode(inputs, dim=32), atol=1e-5)
    with pytest.raises(DataError, match="unsupported input type"):
        model.encode([{"role": "user", "content": "hello"}])


def test_attention_mode_is_kept(model_dir: Path, tmp_path: Path) -> None:
    bidirectional = st.SentenceTransformer(str(write_sentence_transformers_files(shutil.copytree(
        model_dir, tmp_path / "b"))), device="cpu", trust_remote_code=True)
    causal_dir = shutil.copytree(model_dir, tmp_path / "c")
    EmbeddingSpec(PROTOCOLS["cocoa"].replace(attention="causal")).save(causal_dir)
    causal = st.SentenceTransformer(str(write_sentence_transformers_files(causal_dir)), device="cpu",
                                    trust_remote_code=True)
    text = ["a sneaker next to a bag"]
    assert not np.allclose(bidirectional.encode(text), causal.encode(text), atol=1e-3)


def test_save_round_trip(folder: Path, tmp_path: Path) -> None:
    model = st.SentenceTransformer(str(folder), device="cpu", trust_remote_code=True)
    model.save(str(tmp_path / "saved"))
    again = st.SentenceTransformer(str(tmp_path / "saved"), device="cpu", trust_remote_code=True)
    text = ["an ankle boot"]
    np.testing.assert_allclose(again.encode(text), model.encode(text), atol=1e-6)
    assert EmbeddingSpec.load(tmp_path / "saved") == EmbeddingSpec.load(folder)


def test_model_kwargs(folder: Path) -> None:
    model = st.SentenceTransformer(str(folder), device="cpu", trust_remote_code=True,
                                   model_kwargs={"dtype": "float64", "attn_implementation": "eager"})
    assert model[0].model.dtype == torch.float64 and model[0].model.config._attn_implementation == "eager"
    with pytest.raises(ConfigError, match="model_kwargs \\['foo'\\] are not used"):
        st.SentenceTransformer(str(folder), device="cpu", trust_remote_code=True, model_kwargs={"foo": 1})
    with pytest.raises(ConfigError, match="no processor_kwargs"):
        st.SentenceTransformer(str(folder), device="cpu", trust_remote_code=True, processor_kwargs={"max_pixels": 1})
