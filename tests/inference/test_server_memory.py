"""The server's memory under maximal image requests stays within ``ServerSettings.image_bytes_bound`` and
returns to its baseline, measured by ``benchmarks/speed/request_memory.py`` in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads Linux's /proc")
def test_maximal_image_requests_stay_within_the_bound_and_memory_returns() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks/speed/request_memory.py"), "--json",
                          "--over", "24", "--within", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    settings, baseline, over, *within = [json.loads(line) for line in run.stdout.splitlines()]
    base = baseline["rss_mib"]
    # 24 PNGs of 7999x7999 (198 KiB each): refused from their headers, none decoded (one would be 183 MiB)
    assert over["status"] == 413 and "budget of 128000000" in over["message"]
    assert over["peak_mib"] - base < 128 and over["seconds"] < 10
    assert len(within) == 3 and all(r["status"] == 200 for r in within)
    for record in within:  # two of them: served within the bound, and the freed pages go back to the OS
        assert record["peak_mib"] - base <= settings["bound_mib"], (record, settings)
        assert record["rss_mib"] - base < 128, (record, base)
    assert within[-1]["rss_mib"] <= within[0]["rss_mib"] + 32
