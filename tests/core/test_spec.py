"""The checkpoint spec (``cocoa.json``) records Matryoshka dims only when set, and checks them."""

from __future__ import annotations

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

