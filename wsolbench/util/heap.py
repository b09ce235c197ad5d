"""Keeping freed memory in a process that counts maps, instead of handing it back to the system.

Counting one 224 x 224 map allocates a few MB of work arrays (the sweeps' union-find records,
pixel orders, the filled map) and frees them again. glibc's malloc serves blocks above a threshold
with a fresh ``mmap`` and gives them back on ``free``, and trims the top of its heap as soon as
enough of it is free; either way the next map's arrays are new pages, each one faulted in and
zeroed by the kernel: about 150 page faults per map, a fifth of the counting time
(``wsolbench evaluate-maps --workers 1`` on 10,000 of ``benchmarks/bench_evaluator.py``'s maps:
22.5 s, 17.9 s with the heap kept).
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: blocks up to this size come from the heap (glibc's largest allowed threshold on 64-bit
#: systems): a 2048 x 2048 map's largest work array is 117 MB, a 224 x 224 one's 1.4 MB
_MMAP_THRESHOLD = 32 << 20
#: free memory kept at the top of the heap before glibc gives it back
_TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed blocks rather than return them to the system.

    Meant for processes that only count maps (``evaluate-maps``, the counting workers): the
    process keeps up to a few hundred MB it no longer uses. A no-op where the C library is not
    glibc (macOS, musl). Returns whether the setting took.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
