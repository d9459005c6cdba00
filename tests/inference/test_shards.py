"""cocoa.inference.shards: a changed shard is caught and named, before and after the folder is done."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cocoa.core.errors import DataError
from cocoa.inference.index import build_from_shards
from cocoa.inference.shards import ShardedOutput, ShardPlan, ShardReader
from tests.helpers import clustered, write_shards


def test_a_flipped_byte_in_any_shard_is_caught_with_the_shard_named(tmp_path: Path) -> None:
    vectors = clustered(300, 8)
    reader = write_shards(tmp_path / "ok", vectors[:250])
    assert all("sha256" in entry for entry in reader.manifest["shards"])
    assert np.array_equal(np.concatenate([s.vectors for s in reader]), vectors[:250])
    rng = np.random.default_rng(0)
    for trial in range(12):
        folder = tmp_path / f"flip{trial}"
        write_shards(folder, vectors[:250])
        shard = folder / "shard-00000.parquet"
        data = bytearray(shard.read_bytes())
        at = int(rng.integers(0, len(data)))
        data[at] ^= 1 << int(rng.integers(0, 8))
        shard.write_bytes(bytes(data))
        with pytest.raises(DataError, match="shard is corrupt") as caught:
            list(ShardReader(folder))
        assert "shard-00000.parquet" in str(caught.value)
        with pytest.raises(DataError, match="shard is corrupt"):
            build_from_shards(ShardReader(folder), tmp_path / f"index{trial}", kind="flat")


def test_a_shard_changed_before_the_folder_is_finished_is_not_checksummed_as_good(tmp_path: Path) -> None:
    vectors = clustered(300, 8)
    plan = ShardPlan("fp", 8, 100, {"path": "synthetic", "kind": "jsonl", "rows": 300})
    output = ShardedOutput(tmp_path, plan)
    output.start()
    for k in range(plan.num_shards):
        rows = slice(plan.first_row(k), plan.first_row(k) + plan.shard_rows(k))
        output.write(k, [f"v{i}" for i in range(300)][rows], [{}] * plan.shard_rows(k), vectors[rows])
    shard = tmp_path / "shard-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="changed since it was written") as caught:
        output.finish()
    assert "shard-00001.parquet" in str(caught.value)
    assert not (tmp_path / "manifest.json").read_text().count("sha256")
