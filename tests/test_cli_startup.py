"""The ``cocoa`` command starts without the model stack: torch and matplotlib load only where used."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_leaves_torch_and_matplotlib_unloaded() -> None:
    code = ("import sys, cocoa.cli; "
            "print(','.join(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_the_public_api_is_lazy_and_complete() -> None:
    import subprocess
    import sys

    code = ("import sys, cocoa; assert 'torch' not in sys.modules; "
            "from cocoa.core.protocol import get_protocol; from cocoa.recipe import load_recipe; "
            "from cocoa.pipeline.train_stage import train_stage; from cocoa.inference.embedder import Embedder; "
            "assert (cocoa.get_protocol, cocoa.load_recipe, cocoa.train_stage, cocoa.Embedder) == "
            "(get_protocol, load_recipe, train_stage, Embedder); assert sorted(cocoa.__all__) == "
            "sorted(['Embedder', '__version__', 'get_protocol', 'load_recipe', 'train_stage'])")
    subprocess.run([sys.executable, "-c", code], check=True)
