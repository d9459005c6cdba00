"""cocoa: universal multimodal embeddings from MLLMs with the CoCoA recipe."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cocoa.inference.embedder import Embedder

__all__ = ["Embedder", "__version__"]


def __getattr__(name: str) -> Any:
    """``cocoa.Embedder`` without importing the model stack at ``import cocoa``."""
    if name == "Embedder":
        from cocoa.inference.embedder import Embedder

        return Embedder
    raise AttributeError(f"module 'cocoa' has no attribute {name!r}")
