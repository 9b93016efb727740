"""`build --nproc N`: the build in N processes on this machine, started as torchrun starts them
(the same environment variables, so generator.compute.distributed sees no difference), and watched: the
first process that fails stops the others at once, so a dead rank never leaves the rest waiting
in a collective, and the user gets one line saying which process failed and why.

Rank 0 writes to the terminal; the other ranks' output goes to a log file each, whose last line
is quoted if that rank fails. Several machines: run torchrun yourself (README, "Several GPUs").
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

GRACE_S = 10.0
"""seconds the other processes get to clean up after SIGTERM before they are killed."""


def without_nproc(argv: list[str]) -> list[str]:
    """The command line minus `--nproc N` / `--nproc=N`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def check_devices(device: str, nproc: int) -> None:
    """One GPU per process, or on CPU at most two processes a core: refuse more before starting
    any."""
    import torch

    from generator.errors import UserError

    if device == "cpu" or not torch.cuda.is_available():
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        cores = cores or 1
        if nproc > 2 * cores:  # a few more processes than cores still make progress
            raise UserError(f"--nproc {nproc} on {cores} CPU core{'s' if cores != 1 else ''}: "
                            "the processes would only wait for each other; pass --nproc "
                            f"{cores} (at most {2 * cores})")
        return
    count = torch.cuda.device_count()
    if nproc > count:
        raise UserError(f"--nproc {nproc} needs {nproc} GPUs (one per process) but {count} "
                        f"{'is' if count == 1 else 'are'} visible; pass --nproc {count}, or "
                        "--device cpu")


def launch(argv: list[str], nproc: int, extra_env: dict[str, str] | None = None) -> int:
    """Run `feature-browser <argv>` (argv without --nproc) in nproc processes, with `extra_env`
    added to their environment; the exit code of the first that failed, else 0."""
    port = _free_port()
    logs = Path(tempfile.mkdtemp(prefix="feature-browser-ranks-"))
    procs = []
    # OMP_NUM_THREADS is left as it is (torchrun would set 1): torch's CPU kernels split their
    # reductions by thread count, so a process with fewer threads than a one-process build
    # computes other float bits, and the store would no longer be byte-identical
    for rank in range(nproc):
        env = {**os.environ, **(extra_env or {}), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "GROUP_RANK": "0"}
        out = None if rank == 0 else (logs / f"rank-{rank}.log").open("w")
        procs.append(subprocess.Popen([sys.executable, "-m", "generator.cli", *argv], env=env,
                                      stdout=out, stderr=subprocess.STDOUT if out else None))
    log.info("%d processes started (rank 1.. logs in %s)", nproc, logs)
    try:
        code = _watch(procs, logs)
    except BaseException:  # Ctrl-C, SIGTERM (Slurm): each process cleans up, then we go
        _stop(procs)
        raise
    if code == 0:
        for path in logs.iterdir():
            path.unlink()
        logs.rmdir()
    return code


def _watch(procs: list[subprocess.Popen], logs: Path) -> int:
    while True:
        codes = [p.poll() for p in procs]
        failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            rank, code = failed[0]
            _stop(procs)
            if rank != 0:
                why = (f"killed by signal {-code}" if code < 0 else
                       f"exit code {code}: {_last_line(logs / f'rank-{rank}.log')}")
                print(f"feature-browser: error: process {rank} of {len(procs)} failed ({why}); "
                      f"the others were stopped (logs in {logs}), the previous site and store "
                      "are untouched", file=sys.stderr)
            return 2 if code == 2 else 1
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to every process still running (each cleans up its temporary folders), then
    SIGKILL to any still there after GRACE_S."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
