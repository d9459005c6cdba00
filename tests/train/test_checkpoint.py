"""cocoa.train.checkpoint: a stage killed mid-run resumes to the uninterrupted losses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cocoa.train import checkpoint
from tests.helpers import read_metrics, recipe_path, stage_overrides

RESUME_STEPS = 12


def train_command(mini: Path, out: Path, *extra: str) -> list[str]:
    sets = [*stage_overrides("bridge", mini, out, RESUME_STEPS, batch=2), "model.path=null", "model.tiny=tiny",
            "train.save_every=3", "train.keep_checkpoints=2", "train.schedule=linear", "train.warmup_steps=2",
            "data.cap=48"]
    return [sys.executable, "-m", "cocoa.cli", "train", str(recipe_path("bridge")),
            *[a for s in sets for a in ("--set", s)], *extra]


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}


def comparable(metrics: list[dict]) -> list[tuple]:
    return [(m["step"], m["loss"], m["accuracy"], m["grad_norm"], m["lr"]) for m in metrics]


@pytest.mark.slow
def test_resume_after_kill_reproduces_losses(mini_dir: Path, tmp_path: Path) -> None:
    killed_dir, full_dir = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen(train_command(mini_dir, killed_dir), env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    ckpts = killed_dir / "checkpoints"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if checkpoint.latest(ckpts) is not None:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert checkpoint.latest(ckpts) is not None, err.decode()[-2000:]
    killed = proc.returncode == -signal.SIGKILL
    print(f"resume test: killed={killed} checkpoint={checkpoint.latest(ckpts).name}")
    if killed:
        assert not (killed_dir / "model").exists()
    else:  # finished before the kill: resuming still restarts from the last checkpoint (step 9)
        assert proc.returncode == 0, err.decode()[-2000:]
    resumed_from = int(checkpoint.latest(ckpts).name.split("-")[1])
    assert 0 < resumed_from < RESUME_STEPS

    subprocess.run(train_command(mini_dir, killed_dir, "--resume"), env=run_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    subprocess.run(train_command(mini_dir, full_dir), env=run_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    resumed, full = comparable(read_metrics(killed_dir)), comparable(read_metrics(full_dir))
    assert [r[0] for r in full] == list(range(1, RESUME_STEPS + 1))
    assert [r[0] for r in resumed] == [r[0] for r in full]
    np.testing.assert_allclose(np.array([r[1:] for r in resumed]), np.array([r[1:] for r in full]), rtol=1e-6)
    assert '"resumed_from": ' + str(resumed_from) in (killed_dir / "result.json").read_text()
    assert len(list(ckpts.glob("step-*"))) <= 2  # keep_checkpoints
