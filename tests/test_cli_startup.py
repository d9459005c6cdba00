"""The ``cocoa`` command starts without the model stack: torch and matplotlib load only where used."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_leaves_torch_and_matplotlib_unloaded() -> None:
    code = ("import sys, cocoa.cli; "
            "print(','.join(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
