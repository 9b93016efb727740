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
cannot serve comes and goes by mmap. The danger is fragmentation: a loop that frees a large block
and then keeps a small result carves the result out of the freed block, so the next large block no
longer fits there and the heap grows by one block per turn. With blocks up to 1 GB from the heap,
the decoder-cosine neighbours of 65,536 latents (89 MB blocks, a small top-n kept after each)
peaked at 15.7 GiB against 0.5 GiB without, and pass 1 of a 262,144-latent SAE at 10.4 GiB against
3.6 GiB; with blocks up to 64 MB, 0.5 and 3.4 GiB, but the logit effects' 53 MB blocks still grew
the heap by 1 GB. So HEAP_BLOCK stays at 64 MB and the compute uses the retained heap only around
its batch loops (pipeline.compute: pass 1, pass 2 and the examples; the quality figures and the
prompts), never around the blocked products of the summaries or the map. Figures: `python
bench/scale.py --only demo-65k` / `demo-262k`, peak RSS per stage.

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
    memory kept (module docstring). Only around loops that allocate the same large blocks each
    turn and keep little between them."""
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
