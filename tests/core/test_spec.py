"""cocoa.core.spec: ``cocoa.json`` records the protocol and the Matryoshka dims, reads older files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoa.core.errors import ConfigError
from cocoa.core.matryoshka import validate_dims
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import MATRYOSHKA_WIDTHS as DIMS
from tests.helpers import TINY_HIDDEN as HIDDEN
from tests.helpers import make_backbone


def test_spec_records_widths_only_when_set(tmp_path: Path) -> None:
    assert EmbeddingSpec().to_dict() == {"protocol": PROTOCOLS["cocoa"].to_dict(), "max_len": 4096}
    EmbeddingSpec(dims=DIMS).save(tmp_path)
    assert EmbeddingSpec.load(tmp_path).dims == DIMS
    with pytest.raises(ConfigError, match="dims: dims must be strictly ascending"):
        EmbeddingSpec(dims=(64, 32))
    with pytest.raises(ConfigError, match="dims: width 128 is larger"):
        BatchEncoder(make_backbone(), EmbeddingSpec(dims=(32, 128)))
    assert validate_dims([8, HIDDEN], "dims", HIDDEN) == (8, HIDDEN)


def test_spec_records_the_protocol_and_reads_older_files(tmp_path: Path) -> None:
    protocol = PROTOCOLS["cocoa-release"].replace(embedding_token="<|im_end|>", attention="causal")
    EmbeddingSpec(protocol, 512).save(tmp_path)
    saved = json.loads((tmp_path / "cocoa.json").read_text())
    assert saved["protocol"]["name"] == "cocoa-release" and saved["protocol"]["embedding_token"] == "<|im_end|>"
    assert saved["protocol"]["image"] == {"square": 672, "min_pixels": None, "max_pixels": None, "enlarge": None}
    assert EmbeddingSpec.load(tmp_path) == EmbeddingSpec(protocol, 512)
    EmbeddingSpec(PROTOCOLS["vlm2vec-v2"]).save(tmp_path)  # enlarge goes to JSON as a list
    assert EmbeddingSpec.load(tmp_path).protocol == PROTOCOLS["vlm2vec-v2"]
    (tmp_path / "cocoa.json").write_text(json.dumps({"attention": "causal", "max_len": 128}))
    old = EmbeddingSpec.load(tmp_path)
    assert old.protocol == PROTOCOLS["cocoa"].replace(attention="causal") and old.max_len == 128
    (tmp_path / "cocoa.json").write_text(json.dumps({"protocol": {**protocol.to_dict(), "pool": "x"}}))
    with pytest.raises(ConfigError, match=r"cocoa.json: protocol: unknown protocol keys \['pool'\]"):
        EmbeddingSpec.load(tmp_path)


def test_spec_keeps_the_training_record_out_of_equality_and_the_fingerprint(tmp_path: Path) -> None:
    record = {"stage": "contrastive", "batches": {"plan": "runs/plan", "p": 10}, "hard_negatives": None}
    EmbeddingSpec(dims=DIMS, training=record).save(tmp_path)
    assert json.loads((tmp_path / "cocoa.json").read_text())["training"] == record
    loaded = EmbeddingSpec.load(tmp_path)
    assert loaded.training == record and loaded == EmbeddingSpec(dims=DIMS)
    assert "training" not in loaded.embedding() and "training" not in EmbeddingSpec().to_dict()
    backbone = make_backbone()
    assert (BatchEncoder(backbone, loaded).fingerprint()
            == BatchEncoder(backbone, EmbeddingSpec(dims=DIMS)).fingerprint())
    (tmp_path / "cocoa.json").write_text(json.dumps({"max_len": 64, "training": ["random"]}))
    with pytest.raises(ConfigError, match=r"cocoa\.json: training must be a mapping, got list"):
        EmbeddingSpec.load(tmp_path)
