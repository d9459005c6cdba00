"""``benchmarks/scale/corpus_scale.py encode|index --smoke``: ``cocoa encode`` of a small corpus in one
process, and ``cocoa index build --shards`` of every kind over one shard, with their figures."""

from __future__ import annotations

import re

from tests.benchmarks.smoke import RunMain


def test_encode(run_main: RunMain) -> None:
    out = run_main("scale/corpus_scale.py", "encode", "--smoke", "--threads", "1")
    assert re.search(r"^\| 32 \| 1 \| [\d.]+ \| \d+ \| \d+ \|$", out, re.MULTILINE)


def test_index(run_main: RunMain) -> None:
    out = run_main("scale/corpus_scale.py", "index", "--smoke", "--threads", "1")
    assert "10000 vectors of 16 features (1000 clusters), shards of 10000; 1 threads" in out
    rows = dict(re.findall(r"^\| (\w+) \| \d+ \| \d+ \| \d+ \| (exact|[\d.]+) \|$", out, re.MULTILINE))
    assert set(rows) == {"flat", "hnsw", "ivfpq"} and rows["flat"] == "exact"
    assert all(0 < float(rows[kind]) <= 1 for kind in ("hnsw", "ivfpq"))
