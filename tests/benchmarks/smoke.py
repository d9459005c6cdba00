"""Running a benchmark script's ``main(argv)`` in this process, as its ``--smoke`` tests do."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

#: ``run_main(script, *argv)``: what ``benchmarks/<script>``'s ``main(argv)`` printed, its child processes' too.
RunMain = Callable[..., str]


def script_module(script: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/<script>`` imported as the scripts import each other: by name, from its folder."""
    path = BENCHMARKS / script
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.syspath_prepend(str(path.parent))
    module = importlib.import_module(path.stem)
    assert Path(module.__file__ or "") == path, module.__file__
    return module
