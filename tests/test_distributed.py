"""Two CPU ranks under torchrun give the gradients of one process on the global batch."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cocoa.train.distributed import DistInfo

from .dist_worker import step_grads

WORKER = Path(__file__).with_name("dist_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.is_file() else [shutil.which("torchrun") or "torchrun"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    assert sum(bool(t.abs().max() > 0) for t in b.values()) > len(b) // 2
    for name in a:
        scale = float(b[name].abs().max())
        assert torch.allclose(a[name], b[name], rtol=tol, atol=tol * scale + 1e-10), \
            f"{name}: max diff {float((a[name] - b[name]).abs().max()):.3g} (scale {scale:.3g})"


@pytest.fixture(scope="module")
def ranks(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [*torchrun(), "--nproc_per_node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           str(WORKER), str(out), str(image_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(out / f"grads-{r}.pt") for r in range(2)]


@pytest.fixture(scope="module")
def single(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(1)
    return step_grads(image_dir, DistInfo(0, 1, 0, torch.device("cpu")), tmp_path_factory.mktemp("single"))


@pytest.mark.parametrize("name", ["contrastive", "gradcache", "bridge"])
def test_two_ranks_match_one_process(ranks: list[dict], single: dict, name: str) -> None:
    # DDP leaves the same averaged gradients on both ranks
    assert_same(ranks[0][name], ranks[1][name], 1e-6)
    assert_same(ranks[0][name], single[name], 1e-5)
    # every rank reports the loss of the global batch (contrastive) / its own shard (bridge: equal shapes)
    if name != "bridge":
        assert torch.allclose(ranks[0][f"{name}_loss"]["loss"], single[f"{name}_loss"]["loss"], rtol=1e-5)
        assert torch.allclose(ranks[1][f"{name}_loss"]["loss"], single[f"{name}_loss"]["loss"], rtol=1e-5)
    else:
        mean = (ranks[0]["bridge_loss"]["loss"] + ranks[1]["bridge_loss"]["loss"]) / 2
        assert torch.allclose(mean, single["bridge_loss"]["loss"], rtol=1e-5)
