"""glibc malloc settings that stop a CPU training loop from paying page faults on every step.

glibc serves blocks above its mmap threshold (128 KiB at first, raised as such blocks are
freed) with a fresh ``mmap`` and trims the heap whenever more than twice that is free at
its top. A CPU training step allocates and frees the same large activation and gradient
buffers each time, so both paths hand the memory back to the kernel and fault it in again,
page by page, on the next step. On CPU that costs a small CNN a third of its step time or
more, varying from run to run as the dynamic threshold settles (docs/performance.md). Fixed
thresholds keep those buffers in the process for reuse, as the
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` environment variables would.
"""

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks below this come from the heap and are reused; larger ones are mapped and unmapped.
MMAP_THRESHOLD = 64 << 20
#: Free memory at the top of the heap that is kept rather than returned to the kernel.
TRIM_THRESHOLD = 256 << 20

ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def reuse_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process; True if they were set.

    Does nothing off glibc (macOS, musl), and nothing when the environment already sets
    either threshold: the user's choice wins. Settings apply to allocations made afterwards,
    and forked DataLoader workers inherit them.
    """
    if platform.libc_ver()[0] != "glibc" or any(v in os.environ for v in ENV_VARS):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first, since setting the trim threshold
    # alone also freezes the mmap threshold at 128 KiB (every large block mapped: much slower).
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not ok:
        log.warning("glibc refused the malloc thresholds; CPU steps may run slower (docs/performance.md)")
    return ok
