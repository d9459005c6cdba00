"""``benchmarks/gpu/gpu_check.py --smoke`` runs its sections on whatever device there is (the CPU in
CI) at the smoke shape and writes every section's result without an error."""

from __future__ import annotations

import json
import math
from pathlib import Path

from cocoa.model.attention import ATTENTION_MODES
from cocoa.model.backbone import MODEL_CLASSES
from tests.benchmarks.smoke import RunMain


def errors(result: object) -> list[str]:
    """Every ``error`` recorded anywhere in a section's result (a failed section or setting)."""
    if isinstance(result, dict):
        return [str(v) for k, v in result.items() if k == "error"] + [e for v in result.values() for e in errors(v)]
    return []


def test_gpu_check(run_main: RunMain, tmp_path: Path) -> None:
    out = run_main("gpu/gpu_check.py", "--smoke", "--out", str(tmp_path))
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(result) == ["env", "kernels", "throughput", "adapters", "workers", "packing"]
    assert errors(result) == [], errors(result)
    assert all(f"== {section}" in out for section in result)
    kernels = result["kernels"]
    for family in MODEL_CLASSES:
        for mode in ATTENTION_MODES:
            assert kernels[f"{family}/float32/{mode}"]["finite"], (family, mode)
        assert kernels[f"{family}/gpu_bf16_vs_cpu_fp32_min_cosine"] > 0.99
    assert result["throughput"]["smoke/batch"]["rows"] == 2
    assert all(result["throughput"][f"smoke/full/sdpa/{mode}"]["ms"] > 0 for mode in ATTENTION_MODES)
    assert result["throughput"]["smoke/encode_bf16_items_per_s"] > 0
    assert {"smoke/lora/bidirectional/ckpt", "smoke/dora/bidirectional/no-ckpt"} <= set(result["adapters"])
    assert result["workers"]["workers_0_items_per_s"] > 0 and result["workers"]["workers_1_items_per_s"] > 0
    packing = result["packing"]
    assert packing["packed"]["real_over_computed"] >= packing["padded"]["real_over_computed"]
    assert math.isfinite(packing["speedup"])
