"""The two-rank torchrun worker's outputs, shared by the trainer and FSDP tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import free_port, torchrun

WORKER = Path(__file__).with_name("dist_worker.py")


@pytest.fixture(scope="session")
def dist_out(image_dir: Path, mini_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker on two CPU ranks: step results of DDP and FSDP, and a bridge stage trained and resumed."""
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [*torchrun(), "--nproc_per_node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           str(WORKER), str(out), str(image_dir), str(mini_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out
