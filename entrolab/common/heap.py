"""Keep freed memory in the process heap: glibc ``mallopt`` for CPU tensor work (Linux only).

glibc's ``malloc`` serves a block above its mmap threshold (128 KiB at start; it rises with freed blocks
to at most 32 MiB) with a fresh ``mmap`` and hands it back to the OS when it is freed. A CPU tensor of a
few MB made in every step is therefore new memory every time: one page fault per 4 KiB page on its first
write. A sampled simulator step at 1024 runs × 64 prompts × 8 responses makes dozens of such tensors and
spends about a tenth of its time in those faults (``python -m entrolab.bench sim``).

``keep_freed_memory()`` raises the mmap and trim thresholds to 1 GiB, so freed blocks below that size stay
in the heap and the next tensor reuses them. Nothing computed changes, only where its memory comes from.
The cost: the heap keeps its high-water mark (resident memory does not shrink after a peak). Setting the
environment variable ``ENTROLAB_HEAP=os`` leaves glibc's defaults in place.
"""

from __future__ import annotations

import ctypes
import os
import sys

THRESHOLD_BYTES = 1 << 30
"""the mmap and trim thresholds set (glibc caps an explicit mmap threshold at 32 MiB on 32-bit builds)"""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True if they are set (now or before), False where this is
    not glibc on Linux or ``ENTROLAB_HEAP=os``. Never raises."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("ENTROLAB_HEAP", "") == "os":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES)
    )
    return _done
