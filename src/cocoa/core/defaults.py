"""Numbers several layers share, named once (this module imports nothing, so command lines stay light)."""

#: Hex characters kept of a sha256 digest in model and data fingerprints (64 bits: collisions need ~4e9 models).
FINGERPRINT_CHARS = 16
#: Items per forward pass when encoding, unless a caller says otherwise.
ENCODE_BATCH_SIZE = 32

#: Rows per shard of ``cocoa encode``'s folder output: about 6 MB of float32 vectors at 1536 features.
SHARD_SIZE = 1024
