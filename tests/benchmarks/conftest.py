"""Fixtures of the benchmark scripts' smoke tests: ``run_main`` and the tiny MiniMMEB they share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.benchmarks.smoke import RunMain, script_module


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One thread for torch here and in the processes a smoke run starts: its ops are tiny, and on a busy
    machine two threads of tiny ops spend most of their time waiting for each other. The tests after
    these get the count back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> RunMain:
    def run(script: str, *argv: str) -> str:
        status = script_module(script, monkeypatch).main(list(argv))
        out = capfd.readouterr().out
        assert status in (None, 0), out[-3000:]
        return out

    return run


@pytest.fixture(scope="session")
def smoke_mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny MiniMMEB of ``common.smoke_data``, built once for the smoke runs that read one."""
    with pytest.MonkeyPatch.context() as patch:
        common = script_module("common.py", patch)
    return common.smoke_data(tmp_path_factory.mktemp("smoke-mini"))


@pytest.fixture
def smoke_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The tiny model folder of ``common.smoke_model``."""
    return script_module("common.py", monkeypatch).smoke_model(tmp_path / "model")
