"""Imports run one way: every cocoa module imports only from its own layer or the layers below.

The order, bottom to top, is the one README's pipeline map states. Every import counts: those
inside functions (they run, only later) and those under ``if TYPE_CHECKING:`` (an annotation that
names a higher layer is a dependency on it too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import cocoa

#: Bottom to top: a module's layer is its folder (or, at the top, its own name), ``python -m cocoa`` last.
LAYERS = ("core", "model", "data", "losses", "train", "stages", "recipe", "inference", "mining", "evaluate",
          "integrations", "pipeline", "cli", "__main__")
PACKAGE = Path(cocoa.__file__).parent


def layer_of(module: str) -> str | None:
    """The layer of a ``cocoa.*`` module name (``None`` for the package root)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return parts[1]


def cocoa_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, module)`` of every cocoa import, at any depth."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cocoa"):
            if node.module == "cocoa":
                found.extend((node.lineno, f"cocoa.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names if alias.name.startswith("cocoa."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_every_import_points_to_the_same_layer_or_below() -> None:
    upward = []
    files = sorted(PACKAGE.rglob("*.py"))
    for file in files:
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        source = layer_of(".".join(parts))
        if source is None or (parts[-1] == "__init__" and len(parts) == 2):
            continue  # the package root re-exports the public API
        assert source in LAYERS, f"{file}: layer {source!r} is not in the stated order"
        for line, module in cocoa_imports(ast.parse(file.read_text(encoding="utf-8"))):
            target = layer_of(module)
            if target is not None and LAYERS.index(target) > LAYERS.index(source):
                upward.append(f"{file.relative_to(PACKAGE.parent)}:{line} ({source}) imports {module} ({target})")
    assert len(files) > 50
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cocoa.recipe import Recipe\n"
                     "def f():\n    from cocoa.pipeline.driver import run_pipeline\n")
    assert cocoa_imports(tree) == [(3, "cocoa.recipe"), (5, "cocoa.pipeline.driver")]
    assert layer_of("cocoa.core.errors") == "core" and layer_of("cocoa.model.forward") == "model"
