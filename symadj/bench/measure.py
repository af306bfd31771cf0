"""Peak resident memory of this process, and the allocator settings that make it meaningful.

The peak is read from Linux's ``VmHWM``, reset by writing 5 to ``/proc/self/clear_refs``.
For resident memory to follow live memory, glibc must hand large blocks back at once:
a fixed, small mmap threshold does that (``mallopt``), at some cost in speed, so it is set
only around the memory run and a large one is used while timing. Elsewhere (no
``/proc``, no glibc) the lifetime peak from ``getrusage`` is the fallback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys

_M_MMAP_THRESHOLD = -3
SMALL_MMAP_THRESHOLD = 64 * 1024
LARGE_MMAP_THRESHOLD = 32 * 2**20


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def set_mmap_threshold(size: int) -> None:
    """Let glibc serve blocks of ``size`` bytes or more with mmap (no-op elsewhere)."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_MMAP_THRESHOLD, size)


def release_free_memory() -> None:
    """Collect garbage and return free heap pages to the system, before a baseline is read."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> float:
    """Start a new peak measurement; returns the baseline (MiB) the peak is measured above."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return _status_mib("VmRSS")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_mib() -> float:
    """Peak resident memory (MiB) since the last :func:`reset_peak`."""
    try:
        return _status_mib("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
