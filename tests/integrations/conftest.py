"""The tiny checkpoint as a sentence-transformers folder, bidirectional and causal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.integrations.st_layout import write_sentence_transformers_files


@pytest.fixture(scope="module", params=["bidirectional", "causal"])
def folder(request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"st-{request.param}") / "model"
    shutil.copytree(model_dir, out)
    EmbeddingSpec(PROTOCOLS["cocoa"].replace(attention=request.param), dims=(32,)).save(out)
    return write_sentence_transformers_files(out)
