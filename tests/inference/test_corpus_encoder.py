"""`cocoa encode` into shards: the rows' embeddings in order, resumed after kill -9, split across ranks,
and never mixed with shards of another model, input or setting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cocoa.core.errors import ConfigError, DataError
from cocoa.inference.corpus import Corpus
from cocoa.inference.corpus_encoder import encode_corpus
from cocoa.inference.embedder import Embedder
from cocoa.inference.shards import MANIFEST, ShardReader, read_manifest, shard_name
from tests.helpers import free_port, torchrun

ROWS, SHARD = 1500, 50
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}


def read_all(folder: Path) -> tuple[list[str], list[dict], np.ndarray]:
    shards = list(ShardReader(folder))
    return ([i for s in shards for i in s.ids], [json.loads(p) for s in shards for p in s.payloads],
            np.concatenate([s.vectors for s in shards]))


def test_shards_hold_every_rows_embedding_in_input_order(embedder: Embedder, image_dir: Path, tmp_path: Path) -> None:
    rows = [{"id": f"t{i}", "text": f"caption {i} " * (1 + i % 5)} for i in range(23)]
    rows[4:7] = [{"image": f"{name}.png"} for name in "abc"]
    data = image_dir / "shard-rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = encode_corpus(embedder, Corpus(data), tmp_path / "out", shard_size=10, batch_size=4, show_progress=False)
    assert (result.rows, result.shards, result.written, result.resumed) == (23, 3, 3, 0)
    ids, payloads, vectors = read_all(tmp_path / "out")
    assert ids == [str(r.get("id", n)) for n, r in enumerate(rows, start=1)] and payloads == rows
    want = embedder.encode([{"text": r.get("text", ""), "image": image_dir / r["image"] if "image" in r else None}
                            for r in rows], batch_size=4)
    np.testing.assert_allclose(vectors, want, atol=1e-5)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["complete"] and manifest["fingerprint"] == embedder.fingerprint and manifest["dim"] == embedder.dim
    assert [s["rows"] for s in manifest["shards"]] == [10, 10, 3] and manifest["input"]["rows"] == 23


def test_a_rerun_encodes_only_missing_shards_and_refuses_other_runs(embedder: Embedder, tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(25)))
    out = tmp_path / "out"
    encode_corpus(embedder, Corpus(data), out, shard_size=10, show_progress=False)
    before = read_all(out)[2]
    (out / shard_name(1)).unlink()
    again = encode_corpus(embedder, Corpus(data), out, shard_size=10, show_progress=False)
    assert (again.written, again.resumed) == (1, 2)
    np.testing.assert_array_equal(read_all(out)[2], before)
    with pytest.raises(ConfigError, match="shard_size 10, now 5"):
        encode_corpus(embedder, Corpus(data), out, shard_size=5, show_progress=False)
    with pytest.raises(ConfigError, match=r"instruction None, now 'Find it\.'"):
        encode_corpus(embedder, Corpus(data), out, shard_size=10, instruction="Find it.", show_progress=False)
    manifest = read_manifest(out)
    (out / MANIFEST).write_text(json.dumps({**manifest, "fingerprint": "another-model"}))
    with pytest.raises(ConfigError, match="fingerprint 'another-model'"):
        encode_corpus(embedder, Corpus(data), out, shard_size=10, show_progress=False)
    (out / MANIFEST).write_text(json.dumps(manifest))
    with data.open("a") as f:
        f.write(json.dumps({"text": "one more"}) + "\n")
    with pytest.raises(ConfigError, match="input rows 25, now 26"):
        encode_corpus(embedder, Corpus(data), out, shard_size=10, show_progress=False)
    (out / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(DataError, match="not complete"):
        ShardReader(out)


def test_a_cut_short_shard_is_written_again_and_a_bad_width_writes_nothing(embedder: Embedder,
                                                                           tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"row {i}", "when": "2026-12-05"}) + "\n" for i in range(12)))
    out = tmp_path / "out"
    encode_corpus(embedder, Corpus(data), out, shard_size=5, show_progress=False)
    whole = (out / shard_name(1)).read_bytes()
    (out / shard_name(1)).write_bytes(whole[:100])  # as a power cut can leave a renamed file
    again = encode_corpus(embedder, Corpus(data), out, shard_size=5, show_progress=False)
    assert (again.written, again.resumed) == (1, 2) and (out / shard_name(1)).read_bytes() == whole
    with pytest.raises(ConfigError, match="dim=7 is not supported"):
        encode_corpus(embedder, Corpus(data), tmp_path / "bad", dim=7, show_progress=False)
    assert not (tmp_path / "bad").exists()


def cli(model_dir: Path, data: Path, out: Path) -> list[str]:
    return ["-m", "cocoa", "encode", "--model", str(model_dir), "--input", str(data), "--out", str(out),
            "--shard-size", str(SHARD)]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("corpus") / "rows.jsonl"
    data.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} " + "word " * (i % 9)}) + "\n"
                            for i in range(ROWS)))
    return data


@pytest.fixture(scope="module")
def uninterrupted(model_dir: Path, corpus_file: Path) -> Path:
    out = corpus_file.parent / "whole"
    proc = subprocess.run([sys.executable, *cli(model_dir, corpus_file, out)], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(model_dir: Path, corpus_file: Path, uninterrupted: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *cli(model_dir, corpus_file, out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("shard-*.parquet"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("shard-*.parquet")))
    assert 3 <= done < ROWS // SHARD and not read_manifest(out)["complete"]
    resumed = subprocess.run([sys.executable, *cli(model_dir, corpus_file, out)], env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{done} found finished" in resumed.stderr
    assert not list(out.glob(".*.tmp"))  # the shard being written when killed left nothing behind
    ids, payloads, vectors = read_all(out)
    want_ids, want_payloads, want = read_all(uninterrupted)
    assert ids == want_ids == [f"d{i}" for i in range(ROWS)] and payloads == want_payloads
    np.testing.assert_array_equal(vectors, want)


@pytest.mark.slow
def test_two_ranks_write_what_one_process_writes(model_dir: Path, corpus_file: Path, uninterrupted: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "ranks"
    cmd = [*torchrun(), "--nproc_per_node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           *cli(model_dir, corpus_file, out)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "this rank: 15 encoded" in proc.stderr  # rank 0 took every other of the 30 shards
    assert read_manifest(out)["shards"] == read_manifest(uninterrupted)["shards"]
    ids, _, vectors = read_all(out)
    assert ids == read_all(uninterrupted)[0]
    np.testing.assert_array_equal(vectors, read_all(uninterrupted)[2])
