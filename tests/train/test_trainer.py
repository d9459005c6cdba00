"""Two CPU ranks under torchrun (DDP and FSDP) train like one process on the global batch."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cocoa.core.distributed import DistInfo
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.model.backbone import Backbone
from tests.helpers import make_backbone, read_metrics
from tests.train.dist_worker import CASES, LR, RESUME_STEPS, step_results

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("dist_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.is_file() else [shutil.which("torchrun") or "torchrun"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float, atol: float = 0.0) -> None:
    """Same keys, mostly non-zero, equal within ``tol`` of each tensor's scale (or ``atol``)."""
    assert a.keys() == b.keys() and len(a) > 0
    assert sum(bool(t.abs().max() > 0) for t in b.values()) > len(b) // 2
    for name in a:
        scale = float(b[name].abs().max())
        assert torch.allclose(a[name], b[name], rtol=tol, atol=max(tol * scale, atol) + 1e-10), \
            f"{name}: max diff {float((a[name] - b[name]).abs().max()):.3g} (scale {scale:.3g})"


@pytest.fixture(scope="module")
def dist_out(image_dir: Path, mini_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker on two CPU ranks: step results of DDP and FSDP, and a bridge stage trained and resumed."""
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [*torchrun(), "--nproc_per_node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           str(WORKER), str(out), str(image_dir), str(mini_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def ranks(dist_out: Path) -> dict[str, list[dict]]:
    return {mode: [torch.load(dist_out / f"{mode}-{r}.pt") for r in range(2)] for mode in ("ddp", "fsdp")}


@pytest.fixture(scope="module")
def single(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(1)
    return step_results(image_dir, DistInfo(0, 1, 0, torch.device("cpu")), tmp_path_factory.mktemp("single"))


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_match_one_process(ranks: dict, single: dict, mode: str, name: str) -> None:
    rank0, rank1, one = ranks[mode][0][name], ranks[mode][1][name], single[name]
    # both ranks hold the same averaged (FSDP: gathered) gradients, those of one process on the global batch
    assert_same(rank0["grads"], rank1["grads"], 1e-6)
    assert_same(rank0["grads"], one["grads"], 1e-5)
    assert torch.allclose(rank0["metrics"]["grad_norm"], one["metrics"]["grad_norm"], rtol=1e-5)
    # the same AdamW step (|update| ~ lr; elements whose gradient is ~ Adam's eps differ by < 1% of it)
    assert_same(rank0["updates"], rank1["updates"], 0.0)
    # (dedupe: one process embeds the global batch's distinct rows, two ranks their own, so the sums
    # run in another order and an element with a gradient near eps moves by up to 1.3% of lr)
    assert_same(rank0["updates"], one["updates"], 1e-5, atol=(3e-2 if name == "dedupe" else 1e-2) * LR)
    assert sum(float(u.abs().max()) > 0.5 * LR for u in one["updates"].values()) > len(one["updates"]) // 2
    # every rank reports the loss of the global batch (contrastive) / its own shard (bridge: equal shapes)
    losses = torch.stack([rank0["metrics"]["loss"], rank1["metrics"]["loss"]])
    if name == "bridge":
        assert not torch.equal(losses[0], losses[1])
        losses = losses.mean(0, keepdim=True)
    assert torch.allclose(losses, one["metrics"]["loss"], rtol=1e-5)


def test_fsdp_resume_continues_exactly(dist_out: Path) -> None:
    """A bridge stage under FSDP, resumed from its step-2 checkpoint, ends where the uninterrupted run did."""
    out = dist_out / "resume"
    assert json.loads((out / "result.json").read_text())["resumed_from"] == 2
    full = [json.loads(line) for line in (out / "metrics-full.jsonl").read_text().splitlines()]
    resumed = read_metrics(out)
    keys = ("step", "loss", "accuracy", "grad_norm", "lr")
    assert [m["step"] for m in full] == list(range(1, RESUME_STEPS + 1))
    assert [[m[k] for k in keys] for m in resumed] == [[m[k] for k in keys] for m in full]
    assert all(m["lr"] > 0 for m in full[:-1])  # the lr of the next step: every step moves the weights
    # the model folder is a plain upstream checkpoint, the same after resuming as without stopping
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2VLForConditionalGeneration"]
    after = dict(BatchEncoder.from_pretrained(out / "model", device="cpu").backbone.model.named_parameters())
    uninterrupted = dict(Backbone.load(out / "model-full").model.named_parameters())
    assert after.keys() == uninterrupted.keys() == dict(make_backbone().model.named_parameters()).keys()
    assert all(torch.equal(after[n], uninterrupted[n]) for n in after)
    # the checkpoint holds whole (gathered, not per-rank) tensors under the objective's parameter names
    saved = torch.load(out / "checkpoints" / "step-0000002" / "trainable.pt")
    assert {name: t.shape for name, t in saved.items()} == {f"model.{n}": p.shape for n, p in after.items()}
