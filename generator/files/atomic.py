"""Atomic folder output, shared by the store, the site and the demo artifacts: a build that fails or
is interrupted leaves the previous version untouched and no half-written folder.

Temporary folders are named `.NAME.tmp-PID-HOST-RANDOM` (and a replaced folder is parked as
`.NAME.old-PID-HOST-RANDOM` for the instant of the swap), so that a later run can tell the
leftovers of a killed run (`kill -9`, a node crash) from the folders of a run still going, and
remove only the former (`sweep_stale`). The host is part of the name because output folders on a
shared file system are seen by processes on several machines, whose PIDs say nothing here.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from generator.files.manifest import carry_over, write_manifest
from generator.files.signals import deferred_signals

log = logging.getLogger(__name__)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"


def temp_name(name: str, kind: str = "tmp") -> str:
    """`.NAME.KIND-PID-HOST-RANDOM`: the owner is readable from the name alone."""
    return f".{name}.{kind}-{os.getpid()}-{_host()}-{secrets.token_hex(4)}"


def make_temp_dir(path: Path) -> Path:
    """A new empty folder beside `path`, created with os.mkdir so that it gets the user's umask
    (tempfile.mkdtemp makes 0700 folders, which a published site must not be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(temp_name(path.name))
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:  # a 32-bit random collision: draw again
            continue


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_leftovers(path: Path) -> list[Path]:
    """Temp / parked folders beside `path` whose creating process, on this host, is gone."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(tmp|old)-(\d+)-([A-Za-z0-9_]+)-[0-9a-f]+$")
    out: list[Path] = []
    if not path.parent.is_dir():
        return out
    host = _host()
    for entry in path.parent.iterdir():
        match = pattern.match(entry.name)
        if match and match.group(3) == host and not pid_alive(int(match.group(2))):
            out.append(entry)
    return sorted(out)


def _remove(entry: Path) -> None:
    if entry.is_symlink() or not entry.is_dir():
        entry.unlink(missing_ok=True)
    else:
        shutil.rmtree(entry, ignore_errors=True)


PARKED = ".previous"
"""inside a build's staging folder: where the previous output waits during the final swap."""


def sweep_stale(path: Path) -> None:
    """Remove what a killed run left beside `path`. A run killed in the middle of a swap can have
    parked the previous `path` and not yet put the new one in place: then the parked one is put
    back, not deleted."""
    for entry in stale_leftovers(path):
        parked = entry if entry.name.startswith(f".{path.name}.old-") else entry / PARKED
        if parked.is_dir() and not path.exists() and not path.is_symlink():
            parked.rename(path)
            log.warning("restored %s, parked by an interrupted run", path)
        log.info("removing %s, left by an interrupted run", entry)
        _remove(entry)


@contextmanager
def atomic_dir(path: Path, tool_names: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Yield a fresh temp folder beside `path`; when the block succeeds, list its files in its
    manifest, carry the files a user added to the previous `path` into it (generator/files/
    manifest.py; `tool_names` as there) and swap it in place of `path`; when it raises (Ctrl-C
    and SIGTERM included), delete it and keep `path` as it was."""
    path = Path(path)
    sweep_stale(path)
    tmp = make_temp_dir(path)
    try:
        yield tmp
        write_manifest(tmp)
        carry_over(path, tmp, tool_names)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path) -> None:
    """Replace `path` by `tmp` with renames, so one complete version exists on disk at every
    moment (the old one is renamed aside before the new one takes its name)."""
    old = None
    with deferred_signals():  # a signal between the two renames would leave no `path` at all
        if path.exists():
            old = path.with_name(temp_name(path.name, "old"))
            path.rename(old)
        tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
