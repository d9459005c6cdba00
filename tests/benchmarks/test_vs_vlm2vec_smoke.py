"""``benchmarks/vs_vlm2vec/conformance.py --smoke`` runs to the end and agrees on every query, and fails,
naming the query, when one query's image is changed for cocoa only. Without VLM2Vec set up under the
work folder, ``cocoa eval --batch-size 1`` stands in for VLM2Vec's eval.py (in its output format), so
this checks the script (data with mixed token lengths, cocoa's cache keys, the comparison, the exit
code) and cocoa's padding, not conformance to VLM2Vec itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "vs_vlm2vec" / "conformance.py"


def smoke(work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--work", str(work), *extra],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_smoke_agrees_and_a_perturbed_query_fails(tmp_path: Path) -> None:
    run = smoke(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "its stand-in is cocoa eval --batch-size 1" in out
    assert "queries agreeing (same candidate, every item within 1e-04): 24 of 24" in out
    assert "predicted candidate agrees on 24 of 24 queries" in out
    assert out.count("(recomputed from its embeddings: same predictions)") == 2
    assert "disagrees" not in out and out.rstrip().endswith("conformance OK")
    lengths = next(line for line in out.splitlines() if "distinct query texts" in line)
    assert "(17 lengths)" in lengths and "(9 lengths)" in lengths  # batches mix token lengths
    result = json.loads(next((tmp_path / "conformance").glob("*/conformance.json")).read_text())
    assert result["agree"] == result["queries"] == 24 and result["max_abs_diff"] < 1e-5

    perturbed = smoke(tmp_path, "--perturb", "5")
    assert perturbed.returncode == 1, perturbed.stdout[-3000:] + perturbed.stderr[-3000:]
    out = perturbed.stdout
    assert "query 5 (fashion/test/" in out and "disagrees" in out
    assert "queries agreeing (same candidate, every item within 1e-04): 23 of 24" in out
    assert "FAILED: 1 of 24 queries disagree: 5" in out and out.rstrip().endswith("CONFORMANCE FAILED")
