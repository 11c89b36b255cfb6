"""Handing freed memory back to the operating system."""

from __future__ import annotations

import ctypes
import sys


def release_free_heap() -> bool:
    """Return the C heap's free pages to the OS (glibc's `malloc_trim(0)`); whether it did.

    glibc serves the blocks torch frees (gradients, activations, up to 32 MB each once its dynamic mmap threshold
    has grown) from its heap and keeps them resident: freeing 0.2 GB of gradients lowers no RSS until this is
    called. Not glibc (macOS, musl): nothing to do."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
