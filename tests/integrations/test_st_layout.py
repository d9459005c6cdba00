"""cocoa.integrations.st_layout: the files cocoa writes are those sentence-transformers saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoa.integrations.st_layout import CONFIG_FILE, MODULES_FILE

st = pytest.importorskip("sentence_transformers")


def test_written_config_matches_what_sentence_transformers_saves(folder: Path, tmp_path: Path) -> None:
    """The files cocoa writes are the ones the installed sentence-transformers writes for the same model."""
    model = st.SentenceTransformer(str(folder), device="cpu", trust_remote_code=True)
    model.save(str(tmp_path / "saved"))
    ours = json.loads((folder / CONFIG_FILE).read_text())
    theirs = json.loads((tmp_path / "saved" / CONFIG_FILE).read_text())
    assert ours["__version__"]["sentence_transformers"] == theirs["__version__"]["sentence_transformers"]
    assert {k: v for k, v in ours.items() if k != "__version__"} == \
        {k: theirs[k] for k in ours if k != "__version__"}
    assert [m["type"] for m in json.loads((tmp_path / "saved" / MODULES_FILE).read_text())] == \
        [m["type"] for m in json.loads((folder / MODULES_FILE).read_text())]
