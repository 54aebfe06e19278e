"""An opt-in setting of the C allocator for the benchmark process.

NumPy takes the buffer of every array from `malloc`. glibc hands a large freed
buffer back to the operating system (it unmaps it, or trims the top of its heap)
and the next array of that size is fresh memory again: every page of it faults
when first written. On a virtual machine a fault is slow, and for the NumPy tools
(catad, manual, autograd) at GMM's larger sizes the faults took about half the
run time, hiding what the generated code does. `keep_freed_memory` raises glibc's
thresholds so that freed buffers stay in the process and are reused, the way a
long-running NumPy program ends up after warm-up. It changes the whole process,
every tool alike, and is off unless `python -m benchmarks --keep-freed-memory`
asks for it; the report says when it was on.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30  # 1 GiB: larger than any array the benchmarks make


def keep_freed_memory() -> str:
    """Ask glibc to keep freed buffers for reuse; says what was done, or why not."""
    name = ctypes.util.find_library("c")
    if name is None:
        return "not set: no C library found"
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return f"not set: {name} has no mallopt (not glibc)"
    done = [mallopt(_M_MMAP_THRESHOLD, _LIMIT), mallopt(_M_TRIM_THRESHOLD, _LIMIT)]
    if not all(done):
        return "not set: mallopt refused the thresholds"
    return ("glibc mallopt: M_MMAP_THRESHOLD and M_TRIM_THRESHOLD 1 GiB "
            "(freed buffers are reused, not returned to the OS)")
