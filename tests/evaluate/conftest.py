"""Evaluations several evaluate test modules inspect: MiniMMEB on one and two ranks, MMEB-V2 video tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoa.evaluate.runner import evaluate
from cocoa.inference.batch_encoder import BatchEncoder
from tests.helpers import DIST_EVAL_BATCH, two_ranks, write_video_snapshot


@pytest.fixture(scope="session")
def runs(model_dir: Path, mini_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("dist-eval")
    one = evaluate(BatchEncoder.from_pretrained(model_dir, device="cpu"), mini_dir, root / "one",
                   batch_size=DIST_EVAL_BATCH, show_progress=False)
    proc = two_ranks(model_dir, mini_dir, root / "two")
    return root / "one", root / "two", proc.stdout + one.fingerprint


@pytest.fixture(scope="session")
def evaluated(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, BatchEncoder]:
    data = write_video_snapshot(tmp_path_factory.mktemp("v2"))
    out = tmp_path_factory.mktemp("out")
    encoder = BatchEncoder.from_pretrained(model_dir, device="cpu")
    evaluate(encoder, data, out, batch_size=4, show_progress=False, benchmark="MMEB-V2")
    return data, out, encoder
