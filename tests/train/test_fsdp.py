"""cocoa.train.fsdp: a bridge stage under FSDP on two ranks resumes exactly, saving whole tensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.model.backbone import Backbone
from tests.helpers import make_backbone, read_metrics
from tests.train.dist_worker import RESUME_STEPS

pytestmark = pytest.mark.slow


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
