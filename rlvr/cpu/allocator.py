"""Keep freed memory for reuse on CPU (glibc ``mallopt``), instead of handing it back to the kernel.

glibc serves every allocation above its mmap threshold (dynamic, at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` when freed. A training step on CPU allocates and frees
tens of such tensors per layer (activations, their gradients, [chunk, vocab] logits), so each
one page-faults and zeroes its pages again: the elementwise ops then run several times slower
than their arithmetic, matmuls slow down too, and a whole update with it (measurements:
docs/results.md, "Measurements moved from docstrings"). PyTorch's CPU tuning guide advises
jemalloc or tcmalloc for this; :func:`reuse_freed_memory` gets the same effect from the libc
already loaded, with no extra dependency and no ``LD_PRELOAD``.

What it changes: allocations up to 1 GiB come from the heap, freed memory is not trimmed back,
and the heap grows in 256 MiB steps. The process's resident memory then stays near its peak
rather than falling between steps; the peak itself does not grow in our measurements
(``rlvr bench``). Switch: ``train.reuse_freed_memory`` (on by default, CPU only).

Limits: glibc on Linux only (elsewhere it does nothing and says so by returning False); it
applies process-wide, from the moment it is called.
"""

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
SETTINGS = ((M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 256 << 20))


def reuse_freed_memory() -> bool:
    """Apply :data:`SETTINGS` through glibc's ``mallopt``; True when every setting was accepted."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in SETTINGS)
