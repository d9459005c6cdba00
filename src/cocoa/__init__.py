"""cocoa: universal multimodal embeddings from MLLMs with the CoCoA recipe.

The public API, imported lazily so that ``import cocoa`` stays light:

* :class:`Embedder` (``cocoa.inference.embedder``): embed texts, images and videos;
* :func:`load_recipe` (``cocoa.recipe``) and :func:`train_stage` (``cocoa.pipeline.train_stage``):
  train one stage from a YAML recipe;
* :func:`get_protocol` (``cocoa.core.protocol``): a named embedding protocol.

Example (after ``make run``, which leaves ``runs/mini``)::

    import cocoa

    recipe = cocoa.load_recipe("builtin:tiny/contrastive", ["train.output_dir=runs/again", "train.epochs=1"])
    cocoa.train_stage(recipe)
    embedder = cocoa.Embedder.from_pretrained("runs/again/model")
    vectors = embedder.encode(["a red square", {"image": "runs/mini/data/images/some.png"}])

Evaluation is ``cocoa.evaluate.evaluate`` (the name ``cocoa.evaluate`` is its package).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cocoa.core.protocol import get_protocol
    from cocoa.inference.embedder import Embedder
    from cocoa.pipeline.train_stage import train_stage
    from cocoa.recipe import load_recipe

#: Public name -> the module that defines it.
_EXPORTS = {"Embedder": "cocoa.inference.embedder", "get_protocol": "cocoa.core.protocol",
            "load_recipe": "cocoa.recipe", "train_stage": "cocoa.pipeline.train_stage"}
__all__ = ["Embedder", "__version__", "get_protocol", "load_recipe", "train_stage"]


def __getattr__(name: str) -> Any:
    """The public names, each imported on first use (the model stack only when asked for)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cocoa' has no attribute {name!r}")
