"""One run at a time per output: a second `build` (or `render`, `export`, `demo-train`) on a
folder another run is writing is refused at once, in one line naming that run, instead of two runs
racing to swap in their versions (or one deleting the other's checkpoint).

A lock is an advisory `flock` on a file `.NAME.lock` beside the folder: exclusive for a folder
being written, shared for one being read (so that two renders may read the same store while no
build replaces it under them). The kernel releases it when the process ends, however it ends, so a
`kill -9` never leaves a folder locked. The file holds the holder's PID, host and command for the
message, and is removed by the last holder. `flock` is per machine on most network file systems:
two builds on the same outputs from two nodes are not caught there.

`build --nproc N` takes the locks in the launching process; its workers inherit them through
LOCKS_HELD (the launcher holds them for as long as they run).
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from generator.errors import UserError

LOCKS_HELD = "FEATURE_BROWSER_LOCKS_HELD"
"""set by `build --nproc` for its workers: the launcher holds their outputs' locks."""


def lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def _describe(file: Path) -> str:
    try:
        text = file.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return f" ({text[:200]})" if text else ""


@contextmanager
def _one(folder: Path, flag: str, exclusive: bool) -> Iterator[None]:
    path = lock_path(folder)
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _held(path, folder, flag, exclusive):
            yield
    finally:
        for parent in made:  # the parents made for the lock alone go again, when left empty
            try:
                parent.rmdir()
            except OSError:
                break


@contextmanager
def _held(path: Path, folder: Path, flag: str, exclusive: bool) -> Iterator[None]:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{flag} {folder} is in use by another feature-browser run"
                            f"{_describe(path)}; wait for it to finish, or choose another "
                            "folder") from None
        # the file may have been removed by its last holder between our open and our lock
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    if exclusive:
        os.ftruncate(fd, 0)
        os.write(fd, f"PID {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%H:%M:%S')}: {' '.join(sys.argv[1:])[:120]}".encode())
    try:
        yield
    finally:
        try:  # the last holder removes the file; a shared holder still there keeps it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)


@contextmanager
def locked(writes: dict[str, Path], reads: dict[str, Path] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on each folder of `writes` and a shared one on each of `reads`
    (option name -> folder, resolved) for the block; refused in one line if another run holds
    one. Inside a `build --nproc` worker, a no-op."""
    if os.environ.get(LOCKS_HELD) == "1":
        yield
        return
    with ExitStack() as stack:
        for flag, folder in writes.items():
            stack.enter_context(_one(Path(folder), flag, exclusive=True))
        for flag, folder in (reads or {}).items():
            if Path(folder) not in map(Path, writes.values()):  # the guard says why, in words
                stack.enter_context(_one(Path(folder), flag, exclusive=False))
        yield
