"""Keep freed memory in the training process (glibc): fewer page faults per step.

A training step allocates and frees the same large tensors every time (activations, gradients, the optimiser's
temporaries). glibc's malloc serves a request above its mmap threshold (128 KiB at first, adapted up to 32 MiB)
with a fresh ``mmap`` and gives the pages back on ``free``, and it trims the top of the heap once more than
twice the threshold is free: either way every step touches fresh pages, and the kernel zero-fills each one on its
first write. On the demo's step that was ~9,000 minor page faults per step; with the mmap threshold fixed at its
maximum (32 MiB) and trimming only above 1 GiB free, ~700-1,500, and the step ~6-10 % cheaper
(docs/benchmarks.md, tenth round). What is freed stays mapped for the next step, so the resident set is the
largest step's working set rather than less between steps: the memory-bounded backward keeps *that* small.

Nothing is changed when the user already tunes malloc through the environment (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``: e.g. the memory benchmarks force small allocations back to the
OS to measure peaks), or when the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "retain_freed_memory"]

#: glibc's largest allowed mmap threshold on 64-bit systems (``HEAP_MAX_SIZE / 2``); larger values are refused
MMAP_THRESHOLD = 32 << 20
#: free memory at the heap's top that glibc keeps before returning it to the OS
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_state: str | None = None


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    return ctypes.CDLL(name)


def retain_freed_memory() -> str:
    """Set glibc's mmap and trim thresholds for a training process (once; later calls return the first outcome).

    Returns what happened, for the log: ``"retained"``, or ``"unchanged: …"`` with the reason (an environment
    variable already tunes malloc, not glibc, or ``mallopt`` refused a value).
    """
    global _state
    if _state is not None:
        return _state
    given = [k for k in _ENV if os.environ.get(k)]
    if given:
        _state = f"unchanged: {', '.join(given)} set in the environment"
        return _state
    libc = _libc()
    if libc is None:
        _state = "unchanged: the C library is not glibc"
        return _state
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _state = "retained" if ok else "unchanged: mallopt refused the thresholds"
    return _state
