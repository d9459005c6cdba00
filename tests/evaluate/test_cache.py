"""``torchrun ... cocoa eval`` on two CPU ranks scores every query as one process does."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cocoa.evaluate.cache import EmbeddingCache
from cocoa.evaluate.runner import evaluate
from cocoa.evaluate.summary import Summary
from cocoa.inference.batch_encoder import BatchEncoder
from tests.train.test_distributed import free_port, torchrun

pytestmark = pytest.mark.slow
BATCH = 4  # chunks of 32 items: most datasets take several rounds, and the last round leaves a rank idle


def two_ranks(model_dir: Path, mini_dir: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [*torchrun(), "--nproc_per_node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "cocoa", "eval", "--model", str(model_dir), "--data", str(mini_dir), "--out", str(out),
           "--batch-size", str(BATCH)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def runs(model_dir: Path, mini_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("dist-eval")
    one = evaluate(BatchEncoder.from_pretrained(model_dir, device="cpu"), mini_dir, root / "one", batch_size=BATCH,
                   show_progress=False)
    proc = two_ranks(model_dir, mini_dir, root / "two")
    return root / "one", root / "two", proc.stdout + one.fingerprint


def test_two_ranks_score_every_query_as_one_process(runs: tuple[Path, Path, str]) -> None:
    one, two, stdout = runs
    a, b = (Summary.from_dict(json.loads((run / "summary.json").read_text())) for run in (one, two))
    assert (a.world_size, b.world_size) == (1, 2) and "on 2 ranks" in stdout
    assert b.complete and b.fingerprint == a.fingerprint and len(b.datasets) == len(a.datasets) > 20
    assert b.encoded == a.encoded > 0
    for name in a.datasets:
        assert b.datasets[name].score == a.datasets[name].score, name
        pred_a, pred_b = ((run / f"{name}_pred.jsonl").read_text() for run in (one, two))
        assert pred_a == pred_b, name


def test_rank_zero_caches_every_embedding_once(runs: tuple[Path, Path, str]) -> None:
    one, two, _ = runs
    fingerprint = json.loads((one / "summary.json").read_text())["fingerprint"]
    cache_a, cache_b = EmbeddingCache(one / "cache", fingerprint), EmbeddingCache(two / "cache", fingerprint)
    assert set(cache_a._index) == set(cache_b._index) and len(cache_b) > 100
    keys = sorted(cache_a._index)
    np.testing.assert_allclose(cache_b.get(keys), cache_a.get(keys), atol=1e-6)


def test_a_second_run_on_two_ranks_resumes_everything(runs: tuple[Path, Path, str], model_dir: Path,
                                                      mini_dir: Path) -> None:
    _, two, _ = runs
    two_ranks(model_dir, mini_dir, two)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["evaluated"] == [] and summary["encoded"] == 0 and len(summary["resumed"]) > 20
