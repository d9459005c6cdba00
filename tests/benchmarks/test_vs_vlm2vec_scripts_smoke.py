"""``--smoke`` of ``benchmarks/vs_vlm2vec/{run,sizes,mmeb_mix}.py`` in a work folder without VLM2Vec,
so cocoa's side alone: ``cocoa train`` under torchrun and ``cocoa eval`` on ``build.py``'s tiny model
and data, cocoa's image-token counts, and MMEB-shaped packed training with its token accounting.
``conformance.py`` has a test of its own (``test_vs_vlm2vec_smoke.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.benchmarks.smoke import RunMain
from tests.helpers import free_port


def test_run(run_main: RunMain, tmp_path: Path) -> None:
    out = run_main("vs_vlm2vec/run.py", "--smoke", "--work", str(tmp_path), "--port", str(free_port()))
    assert f"VLM2Vec is not set up under {tmp_path}: cocoa's side only" in out
    assert "32 training rows, 8 eval queries, fp32" in out and "medians" not in out
    assert re.search(r"^ +0 +cocoa train +[\d.]+ +[\d.]+ +\d+ +-$", out, re.MULTILINE)
    assert re.search(r"^ +0 +cocoa +eval +- +[\d.]+ +\d+ +[\d.]+$", out, re.MULTILINE)
    [folder] = (tmp_path / "runs").iterdir()
    assert folder.name.endswith("-smoke")
    runs = json.loads((folder / "runs.json").read_text())
    assert [(r["system"], r["what"]) for r in runs] == [("cocoa", "train"), ("cocoa", "eval")]
    assert (tmp_path / "model-tiny-vocabtok" / "config.json").is_file()


def test_sizes(run_main: RunMain, tmp_path: Path) -> None:
    out = run_main("vs_vlm2vec/sizes.py", "--smoke", "--work", str(tmp_path))
    assert "cocoa's policies against its preprocessor only" in out
    assert out.rstrip().endswith("64 of 64 (size, preset) pairs give the same count from policy and preprocessor "
                                 "(16 sizes, sides 20-2200 px)")


def test_mmeb_mix(run_main: RunMain, tmp_path: Path) -> None:
    out = run_main("vs_vlm2vec/mmeb_mix.py", "--smoke", "--work", str(tmp_path), "--port", str(free_port()))
    ratios = dict(re.findall(r"(vlm2vec|cocoa padded|cocoa packed|cocoa packed, token chunks) ([\d.]+)(?:,|$)",
                             out.split("real / computed tokens: ")[1].splitlines()[0]))
    assert set(ratios) == {"vlm2vec", "cocoa padded", "cocoa packed", "cocoa packed, token chunks"}
    assert all(0 < float(v) <= 1 for v in ratios.values())
    assert re.search(r"^\| cocoa packed, token chunks \| [\d.]+ \| - \| [\d.]+ \|$", out, re.MULTILINE)
