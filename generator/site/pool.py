"""The page workers: a job run over chunks of pages in forked processes, results in chunk order.

The job is any callable `job(lo, hi)` (a bound method of the site writer, with whatever it closes
over): the workers are forked with it, so they have the writer's whole state and nothing is
pickled but the results. Worker w runs chunks w, w + W, w + 2W, ... in order and writes each
result to its own pipe (a length-prefixed pickle); the parent reads chunk k from worker k mod W,
so results come back in chunk order. Every file a job writes depends only on the store, so the
site is the same byte for byte whatever the number of workers.

No locks are shared between the processes (multiprocessing.Pool shares a task queue whose lock a
killed worker can leave held: its terminate() then waits for ever, which is what a Slurm or
`timeout` SIGTERM to the whole process group did to a render). Here the parent stops the team
by SIGKILL and waits for each worker, which cannot block; a worker that dies is an end-of-file
on its pipe, reported with its exit status; a job's exception is re-raised in the parent.

Signals: a worker restores the default SIGTERM handler and ignores SIGINT (Ctrl-C is the parent's
business), and dies with its parent (PR_SET_PDEATHSIG on Linux), so that neither a build's
clean-up handlers nor a killed parent can leave a worker writing pages nobody will use.

Memory: each worker is a fork (copy-on-write) of the parent; a result is held once in the
worker's pipe and once in the parent while it is read.

Garbage collection: what exists when the job starts (the store, the page builder, their Python
lists: a store's example kinds are one list of 40 M strings at 1,048,576 latents) is frozen
(gc.freeze) for the job's length, in the parent and so in every worker. Otherwise each full
collection walks it all (0.35 s at 1M latents, and its reference-count writes copy the parent's
pages into each worker): a packed shard at 1M latents took 2.3–3.3 ms a latent instead of 1.5.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import struct
import traceback
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
_LENGTH = struct.Struct("<Q")


def in_parallel(job: Callable[[int, int], T], chunks: list[tuple[int, int]], workers: int,
                desc: str, unit: str, quiet: bool = False) -> Iterator[T]:
    """`job(lo, hi)` of every chunk, yielded in chunk order, with a progress bar over the
    chunks' total size. Chunks run in `workers` forked processes when there are several workers
    and chunks, else in this process."""
    workers = min(workers, len(chunks))
    thawed = not gc.get_freeze_count()  # else someone froze before us: leave the thaw to them
    gc.freeze()
    bar = tqdm(total=chunks[-1][1] - chunks[0][0] if chunks else 0, desc=desc, unit=unit,
               disable=quiet)
    team = _Team(job, chunks, workers) if workers > 1 else None
    try:
        for k, (lo, hi) in enumerate(chunks):
            result = team.result(k) if team is not None else job(lo, hi)
            bar.update(hi - lo)
            yield result
        if team is not None:
            team.finish()
    finally:
        bar.close()
        if team is not None:
            team.stop()
        if thawed:
            gc.unfreeze()


def run_all(job: Callable[[int, int], Any], chunks: list[tuple[int, int]], workers: int,
            desc: str, unit: str, quiet: bool = False) -> None:
    """`in_parallel` for jobs whose only result is the files they write."""
    for _ in in_parallel(job, chunks, workers, desc, unit, quiet):
        pass


def chunked(n: int, size: int) -> list[tuple[int, int]]:
    """[0, n) cut into chunks of `size` (the last one shorter)."""
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


class _Team:
    """W forked workers, each with a pipe to the parent."""

    def __init__(self, job: Callable[[int, int], Any], chunks: list[tuple[int, int]],
                 workers: int) -> None:
        self.pids: list[int] = []
        self.pipes: list[IO[bytes]] = []
        try:
            for w in range(workers):
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:  # the worker: never returns into the parent's code
                    os.close(read)
                    _work(job, chunks[w::workers], write)
                os.close(write)
                self.pids.append(pid)
                self.pipes.append(os.fdopen(read, "rb"))
        except BaseException:
            self.stop()
            raise

    def result(self, k: int) -> Any:
        """Chunk k's result, from worker k mod W (which sends its chunks in order)."""
        w = k % len(self.pids)
        head = self.pipes[w].read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            raise RuntimeError(f"page worker {w} ended before its work was done "
                               f"({self._status(w)})")
        size = _LENGTH.unpack(head)[0]
        payload = self.pipes[w].read(size)
        if len(payload) < size:
            raise RuntimeError(f"page worker {w} ended while sending a result ({self._status(w)})")
        ok, value = pickle.loads(payload)
        if not ok:
            raise value
        return value

    def finish(self) -> None:
        """Wait for every worker to exit, which they do after their last result."""
        for w in range(len(self.pids)):
            status = self._status(w)
            if status != "exit code 0":
                raise RuntimeError(f"page worker {w} failed after its work was done ({status})")

    def stop(self) -> None:
        """Kill the workers still running and reap them all (never blocks on a worker)."""
        for w, pid in enumerate(self.pids):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._status(w)
        for pipe in self.pipes:
            pipe.close()
        self.pipes = []

    def _status(self, w: int) -> str:
        """Wait for worker w to end (once) and say how it ended."""
        pid = self.pids[w]
        if not pid:
            return "exit code 0"
        self.pids[w] = 0
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return f"killed by signal {os.WTERMSIG(status)}"
        return f"exit code {os.WEXITSTATUS(status)}"


def _work(job: Callable[[int, int], Any], chunks: list[tuple[int, int]], fd: int) -> None:
    """A worker's whole life: its chunks in order, each result down the pipe, then _exit (never
    the parent's clean-up: its finally blocks would remove the staging folder)."""
    code = 1
    try:
        _worker_signals()
        with os.fdopen(fd, "wb") as pipe:
            for lo, hi in chunks:
                try:
                    message = (True, job(lo, hi))
                except BaseException as err:  # noqa: BLE001 (sent to the parent, which raises)
                    message = (False, _sendable(err))
                payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
                pipe.write(_LENGTH.pack(len(payload)) + payload)
                pipe.flush()
                if not message[0]:
                    return
        code = 0
    finally:
        os._exit(code)


def _sendable(err: BaseException) -> BaseException:
    """The exception itself when it pickles, else a RuntimeError with its traceback."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001
        return RuntimeError("".join(traceback.format_exception(err)).rstrip())


def _worker_signals() -> None:
    """A forked worker inherits its parent's signal handlers (a build's SIGTERM clean-up, a test
    runner's): restore the defaults, so that a SIGTERM to the process group ends it and Ctrl-C
    is the parent's business alone."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """On Linux, a worker is killed when its parent dies (even by kill -9), instead of writing
    pages into a staging folder nobody will use; the next build can then remove that folder at
    once."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's stop() still applies
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)
