"""Using a cocoa checkpoint from other libraries: sentence-transformers, mteb and vLLM."""
