"""The page workers: a job run over chunks of pages in forked processes, results in chunk order.

The job is any callable `job(lo, hi)` (a bound method of the site writer, with whatever it closes
over): it is stored here before the workers are forked, so they inherit it with the writer's
whole state and nothing is pickled but the results. Every file a job writes depends only on the
store, so the site is the same byte for byte whatever the number of workers.

Signals: a worker restores the default SIGTERM handler and ignores SIGINT (Ctrl-C is the parent's
business), and dies with its parent (PR_SET_PDEATHSIG on Linux), so that neither a build's
clean-up handlers nor a killed parent can leave a worker writing pages nobody will use.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

Job = Callable[[int, int], Any]
"""`job(lo, hi)`: the work of one chunk of pages [lo, hi)."""

_FORKED_JOB: Job | None = None
"""the job of the pool being forked, inherited by its workers."""


def in_parallel(job: Callable[[int, int], T], chunks: list[tuple[int, int]], workers: int,
                desc: str, unit: str, quiet: bool = False) -> Iterator[T]:
    """`job(lo, hi)` of every chunk, yielded in chunk order, with a progress bar over the
    chunks' total size. Chunks run in `workers` forked processes when there are several workers
    and chunks, else in this process."""
    global _FORKED_JOB
    workers = min(workers, len(chunks))
    bar = tqdm(total=chunks[-1][1] - chunks[0][0] if chunks else 0, desc=desc, unit=unit,
               disable=quiet)
    if workers <= 1:
        done: Iterable[T] = (job(lo, hi) for lo, hi in chunks)
        pool = None
    else:
        _FORKED_JOB = job  # inherited by the forked workers (nothing is pickled)
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals)
        done = pool.imap(_chunk_in_worker, chunks)
    finished = False
    try:
        for (lo, hi), result in zip(chunks, done, strict=True):
            bar.update(hi - lo)
            yield result
        finished = True
    finally:
        bar.close()
        if pool is not None:
            # workers leave on their own once the queue is closed; terminate (SIGTERM) only
            # on an error, so that a parent's signal handlers can never keep one waiting
            if finished:
                pool.close()
            else:
                pool.terminate()
            pool.join()
            _FORKED_JOB = None


def run_all(job: Callable[[int, int], Any], chunks: list[tuple[int, int]], workers: int,
            desc: str, unit: str, quiet: bool = False) -> None:
    """`in_parallel` for jobs whose only result is the files they write."""
    for _ in in_parallel(job, chunks, workers, desc, unit, quiet):
        pass


def chunked(n: int, size: int) -> list[tuple[int, int]]:
    """[0, n) cut into chunks of `size` (the last one shorter)."""
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _worker_signals() -> None:
    """A forked worker inherits its parent's signal handlers (a build's SIGTERM clean-up, a test
    runner's): restore the defaults, so that Pool.terminate's SIGTERM ends it and Ctrl-C is the
    parent's business alone."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """On Linux, a worker is killed when its parent dies (even by kill -9), instead of writing
    pages into a staging folder nobody will use and printing broken-pipe tracebacks; the next
    build can then remove that folder at once."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own clean-up still applies
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _chunk_in_worker(chunk: tuple[int, int]) -> Any:
    assert _FORKED_JOB is not None, "chunks run in workers forked by in_parallel"
    lo, hi = chunk
    return _FORKED_JOB(lo, hi)
