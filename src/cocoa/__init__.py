"""cocoa: universal multimodal embeddings from MLLMs with the CoCoA recipe."""

__version__ = "0.1.0"
