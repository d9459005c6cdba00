"""Giving freed memory back to the operating system.

A large decoded image is freed once it has been reduced, but glibc's allocator keeps the freed
heap pages, so the process's RSS stays at its peak. :func:`release_free_memory` asks the allocator
to return them (``malloc_trim``); where the C library has no such call (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS; whether the C library could be asked."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
