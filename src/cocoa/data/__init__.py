"""Data: items, images, MMEB readers, the MiniMMEB builder and batch collation."""
