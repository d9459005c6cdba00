"""The MiniMMEB the MiniMMEB tests inspect, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoa.data.minimmeb.build import Manifest, build_mini
from tests.helpers import MINI_SIZES as SMALL


@pytest.fixture(scope="session")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("mini")
    return out, build_mini(out, seed=0, **SMALL)
