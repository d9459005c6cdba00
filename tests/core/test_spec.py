"""The checkpoint spec (``cocoa.json``) records Matryoshka widths only when set, and checks them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoa.core.errors import ConfigError
from cocoa.core.matryoshka import validate_dims
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import EmbeddingSpec
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import MATRYOSHKA_WIDTHS as WIDTHS
from tests.helpers import TINY_HIDDEN as HIDDEN
from tests.helpers import make_backbone


def test_spec_records_widths_only_when_set(tmp_path: Path) -> None:
    assert EmbeddingSpec().to_dict() == {"protocol": PROTOCOLS["cocoa"].to_dict(), "max_len": 4096}
    EmbeddingSpec(matryoshka_dims=WIDTHS).save(tmp_path)
    assert EmbeddingSpec.load(tmp_path).matryoshka_dims == WIDTHS
    with pytest.raises(ConfigError, match="matryoshka_dims: widths must be strictly ascending"):
        EmbeddingSpec(matryoshka_dims=(64, 32))
    with pytest.raises(ConfigError, match="matryoshka_dims: width 128 is larger"):
        BatchEncoder(make_backbone(), EmbeddingSpec(matryoshka_dims=(32, 128)))
    assert validate_dims([8, HIDDEN], "dims", HIDDEN) == (8, HIDDEN)

