"""The host heap while the compute stages run: freed memory kept for the next batch.

torch's CPU tensors come from glibc's malloc, which serves every block over its mmap threshold
(at most 32 MB, adjusted as blocks are freed) with a fresh mmap and gives it back on free. A
batch loop allocates the same large blocks again and again (the SAE's dense encoding, a block of
logits, the model's activations), so each one faults its pages in anew: on the demo's
`--no-ablation` build, 5.7 million minor page faults and 12 s of system time, a third of the
wall time on 2 cores. With blocks up to HEAP_BLOCK served from the heap and up to HEAP_KEEP of
free memory kept at its top, the same build takes 0.8 million faults and 3.5 s.

Memory: the process keeps up to HEAP_KEEP of freed memory beyond what it holds (its peak RSS is its
heap's high-water mark, not its live memory); a block over HEAP_BLOCK that the heap's free top
cannot serve comes and goes by mmap. HEAP_BLOCK stays small because blocks kept in the heap fragment
it when long-lived arrays (pass 1's cache and sums) grow between them: with 256 MB or 1 GB blocks
from the heap, pass 1 of a 262,144-latent SAE peaked at 11.8 / 10.4 GiB, against 3.6 GiB with no
retained heap and 3.4 GiB with 64 MB blocks (pass 1 in 54 s, against 60 s and 76 s; `python
bench/scale.py --only demo-262k` with HEAP_BLOCK changed). The SAE's dense encoding is 64 MB
whatever its width (Engine.encode_rows) and goes by mmap at 262k; the demo's blocks are smaller and
stay.

The defaults come back, and the free memory goes back to the system, when the compute ends: the
render forks its workers from this process. (Set back explicitly, the mmap threshold stays at its
default of 128 KB rather than adjusting itself as glibc's untouched one does.)

Only where the C library is glibc; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager

HEAP_KEEP = 1 << 30
"""the most free memory kept at the heap's top."""
HEAP_BLOCK = 64 << 20
"""the largest block served from the heap (module docstring: larger ones fragment it)."""

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_DEFAULTS = {_M_TRIM_THRESHOLD: 128 << 10, _M_TOP_PAD: 128 << 10, _M_MMAP_THRESHOLD: 128 << 10}
"""glibc's documented defaults (mallopt(3))."""


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (present in glibc only)
        return libc
    except (OSError, AttributeError):
        return None


def _set(libc: ctypes.CDLL, options: dict[int, int]) -> bool:
    return all(libc.mallopt(ctypes.c_int(k), ctypes.c_int(v)) == 1 for k, v in options.items())


@contextmanager
def retained_heap() -> Iterator[None]:
    """Within (a `with` block, or the decorated function): large blocks from the heap, and freed
    memory kept (module docstring)."""
    libc = _glibc()
    if libc is None or not _set(libc, {_M_MMAP_THRESHOLD: HEAP_BLOCK,
                                       _M_TRIM_THRESHOLD: HEAP_KEEP, _M_TOP_PAD: 64 << 20}):
        yield
        return
    try:
        yield
    finally:
        _set(libc, _DEFAULTS)
        libc.malloc_trim(ctypes.c_size_t(0))
