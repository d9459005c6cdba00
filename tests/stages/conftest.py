"""The preprocessor of the stage batch-builder tests."""

from __future__ import annotations

import pytest

from cocoa.data.collate import Preprocessor
from cocoa.model.backbone import Backbone


@pytest.fixture(scope="module")
def pre(tiny_backbone: Backbone) -> Preprocessor:
    return Preprocessor(tiny_backbone, max_len=256)
