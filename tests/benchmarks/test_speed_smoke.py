"""``--smoke`` of the scripts in ``benchmarks/speed/`` but ``request_memory.py`` (run by
``tests/inference/test_server_memory.py``): each runs its real code path in seconds on tiny models
and inputs and prints the figures a full run prints."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cocoa.model.attention import ATTENTION_MODES
from tests.benchmarks.smoke import RunMain

NUMBER = r"[\d.]+"


@pytest.fixture
def denormals_kept() -> Iterator[None]:
    """``attention_speed.py`` flushes denormals for the whole process; later tests must not."""
    yield
    torch.set_flush_denormal(False)


def test_attention_speed(run_main: RunMain, denormals_kept: None) -> None:
    out = run_main("speed/attention_speed.py", "--smoke", "--threads", "1")
    assert "1 threads, batch 2, sdpa, fp32, median of 1" in out
    rows = re.findall(rf"^\| tiny \| {NUMBER}M \| \(2, \d+\) \| (\w+) \| {NUMBER} \| {NUMBER} \| ({NUMBER})x \|$",
                      out, re.MULTILINE)
    assert [mode for mode, _ in rows] == list(ATTENTION_MODES) and dict(rows)["bidirectional"] == "1.00"


def test_eval_speed(run_main: RunMain, smoke_mini: Path, smoke_model: Path) -> None:
    out = run_main("speed/eval_speed.py", "--smoke", "--data", str(smoke_mini), "--model", str(smoke_model))
    assert "2 datasets, 8 queries" in out
    for measure in ("encode each unique item once", "evaluator (fresh cache)", "naive (estimated from 1"):
        assert re.search(rf"{re.escape(measure)}.*│ {NUMBER} +│", out), measure
    assert re.search(r"unique items (\d+), encoded by the evaluator \1;", out)


def test_frozen_memory(run_main: RunMain, tmp_path: Path) -> None:
    out = run_main("speed/frozen_memory.py", "--smoke", "--work", str(tmp_path))
    for precision, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        assert re.search(rf"^\| {precision} \| torch\.{dtype} \| {NUMBER} \| {NUMBER} \| {NUMBER} \|$", out,
                         re.MULTILINE), precision
    assert (tmp_path / "smoke-random" / "config.json").is_file()


def test_load_test(run_main: RunMain) -> None:
    out = run_main("speed/load_test.py", "--smoke")
    assert "server in a process, serve options (defaults), raw client, 48 requests/phase" in out
    for phase in ("sequential", "4 clients"):
        assert re.search(rf"^{phase} +36 req +{NUMBER} req/s .* errors 0 .* encode calls \d+ .* server CPU "
                         rf"{NUMBER} ms/req +bad requests 12, answered other than 4xx 0$", out, re.MULTILINE), phase
    assert re.search(rf"server RSS \d+ MiB, peak \d+ MiB\nthroughput gain from dynamic batching: {NUMBER}x", out)


def test_preprocess_speed(run_main: RunMain) -> None:
    out = run_main("speed/preprocess_speed.py", "--smoke")
    assert re.search(rf"preprocess \+ collate 8 items \(4 images of 56x56\), 1 thread\(s\): {NUMBER} s, "
                     rf"{NUMBER} items/s", out)


def test_server_busy(run_main: RunMain) -> None:
    out = run_main("speed/server_busy.py", "--smoke")
    assert "server in a thread" in out and "throughput gain from dynamic batching" in out
    assert re.search(rf"last 40 model calls: model busy \d+% of {NUMBER} s, mean call {NUMBER} ms, mean items "
                     rf"{NUMBER}, mean longest sequence {NUMBER} tokens", out)
    assert re.search(rf"one-at-a-time phase: mean model call {NUMBER} ms over [1-9]\d* calls", out)


def test_train_speed(run_main: RunMain, smoke_mini: Path) -> None:
    out = run_main("speed/train_speed.py", "--smoke", "--data", str(smoke_mini), "--threads", "1")
    assert re.search(rf"measured matmul peak {NUMBER} GFLOP/s; 1 timed steps per stage", out)
    assert re.search(rf"^\| tiny \| contrastive \| {NUMBER}M \| {NUMBER} \| {NUMBER} \| \d+ \| {NUMBER} \| "
                     rf"{NUMBER}% \|$", out, re.MULTILINE)


def test_video_speed(run_main: RunMain) -> None:
    out = run_main("speed/video_speed.py", "--smoke", "--threads", "1")
    assert "2 clips of 4 frames at 56x56, 2 sampled, 1 threads" in out
    assert re.search(r"\| frame folders \(JPEG\) \| \d+ \|\n\| mp4 files \(PyAV\) \| \d+ \|", out)
    assert re.search(rf"tiny model, folders: {NUMBER} clips/s \(\d+ frames/s\), \d+ tokens per clip", out)


def test_packing_speed(run_main: RunMain) -> None:
    out = run_main("speed/packing_speed.py", "--smoke")
    rows = re.findall(rf"^ +(\d+) +\d+ +\d+ +{NUMBER} +{NUMBER} +{NUMBER}x +({NUMBER}e[-+]\d+)$", out, re.MULTILINE)
    assert [n for n, _ in rows] == ["1", "4"] and all(float(diff) < 1e-4 for _, diff in rows)


def test_packed_attention(run_main: RunMain) -> None:
    out = run_main("speed/packed_attention.py", "--smoke", "--threads", "1")
    rows = re.findall(rf"^\| 384 \| \d+ \| (\w+) \| \d+% \| .* \| ({NUMBER}e-\d+) \|$", out, re.MULTILINE)
    assert [mask for mask, _ in rows] == ["bidirectional", "causal"] and all(float(d) < 1e-4 for _, d in rows)


def test_packed_training(run_main: RunMain, tmp_path: Path) -> None:
    out = run_main("speed/packed_training.py", "--smoke", "--threads", "1", "--images", str(tmp_path))
    for stage in ("contrastive", "bridge", "warmup"):
        assert re.search(rf"^{stage}: real tokens / computed tokens: padded {NUMBER}, packed {NUMBER}$", out,
                         re.MULTILINE), stage
    assert len(re.findall(rf"^\| samples/s \| {NUMBER} \| {NUMBER} \| {NUMBER}x \|$", out, re.MULTILINE)) == 3
