"""Atomic folder output, shared by the store, the site and the demo artifacts (DESIGN §6): a build
that fails or is interrupted leaves the previous version untouched and no half-written folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a fresh temp folder beside `path`; when the block succeeds, swap it in place of
    `path`; when it raises (Ctrl-C included), delete it and keep `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path) -> None:
    """Replace `path` by `tmp` with renames, so one complete version exists on disk at every
    moment (the old one is renamed aside before the new one takes its name)."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{tmp.name[-8:]}")
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
