"""The build's two output folders, `--store` and `--out`: guarded, staged and swapped in as a pair.

- Guard (before any compute): each may be a new folder, an empty one, or a previous output of the
  same kind (a store carries STORE_MARKER, a site render's SITE_MARKER). Anything else (a file, a
  folder of the user's own, the working directory or one of its parents, the two options naming
  the same folder or one inside the other) is refused: replacing it would delete the user's data.
- Staging: a `.NAME.tmp-PID-HOST-RANDOM` folder beside each output is made before compute (so an
  unwritable location fails in seconds), the new output is written inside it, and `commit` swaps
  both in with renames, so a failed or interrupted build leaves both previous outputs, as a pair.
- Signals: SIGTERM (Slurm, `timeout`) and SIGINT raise `Interrupted`, so the same clean-up runs as
  for any failure, and the CLI says so on one line.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from generator.errors import UserError
from generator.files.atomic import PARKED, make_temp_dir, sweep_stale

log = logging.getLogger(__name__)

STORE_MARKER = ".feature-browser-store"
"""an empty file in every store written by write_store: the store guard's proof of ownership."""
SITE_MARKER = ".nojekyll"
"""written by render_site into every site (GitHub Pages needs it); the same file render checks."""


def is_store(path: Path) -> bool:
    # Stores written before STORE_MARKER existed are recognised by their two defining files.
    return (path / STORE_MARKER).is_file() or (
        (path / "meta.json").is_file() and (path / "latents.parquet").is_file())


def is_site(path: Path) -> bool:
    return (path / SITE_MARKER).is_file()


def check_output_folder(flag: str, path: Path, what: str, ours: bool) -> None:
    """Refuse, in one line, `path` as the folder of option `flag` unless it is new, empty or
    `ours` (a previous output of this tool, which may be replaced); `what` names the output."""
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise UserError(f"{flag} {path} is the current folder or one of its parents, which a build "
                        f"would replace; pass a new folder, e.g. {flag} {what}")
    if path.is_symlink() and not path.exists():
        raise UserError(f"{flag} {path} is a broken symbolic link; remove it or choose another "
                        "folder")
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a {what} folder; choose a new or empty "
                        f"folder for {flag}")
    if path.is_dir() and any(path.iterdir()) and not ours:
        raise UserError(f"{flag} {path} is a non-empty folder that is not a feature-browser "
                        f"{what}; choose a new or empty folder for {flag}")


def check_outputs(out: Path, store: Path) -> tuple[Path, Path]:
    """Refuse any `--out` / `--store` whose replacement could lose data; returns both resolved
    (a symbolic link to a previous output is followed, the link itself stays)."""
    out_r, store_r = Path(out).expanduser().resolve(), Path(store).expanduser().resolve()
    if out_r == store_r:
        raise UserError(f"--out and --store are the same folder {out_r}; give each its own folder, "
                        "e.g. --out site --store store")
    check_output_folder("--out", out_r, "site", out_r.is_dir() and is_site(out_r))
    check_output_folder("--store", store_r, "store", store_r.is_dir() and is_store(store_r))
    if out_r in store_r.parents:
        raise UserError(f"--store {store_r} is inside --out {out_r}, which a build replaces; put "
                        "them side by side, e.g. --out site --store store")
    if store_r in out_r.parents:
        raise UserError(f"--out {out_r} is inside --store {store_r}, which a build replaces; put "
                        "them side by side, e.g. --out site --store store")
    for flag, path in (("--out", out_r), ("--store", store_r)):
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {path}: cannot write in {parent} (permission denied); choose "
                            f"a folder you can write to for {flag}")
    return out_r, store_r


class StagedOutputs:
    """Staging folders for several outputs, swapped in together by `commit`.

    On leaving the block, the staging folders go: after a commit they hold the previous outputs,
    otherwise the unfinished new ones."""

    def __init__(self, targets: list[Path]):
        self.targets = [Path(t) for t in targets]
        self.stages: list[Path] = []

    def __enter__(self) -> StagedOutputs:
        try:
            for target in self.targets:
                sweep_stale(target)
                self.stages.append(make_temp_dir(target))
        except OSError as err:
            self._remove_stages()
            raise UserError(f"cannot create a folder beside {target} ({err.strerror}); choose a "
                            "location you can write to") from None
        return self

    def path(self, target: Path) -> Path:
        """Where the new version of `target` is to be written (it must not exist yet)."""
        i = self.targets.index(Path(target))
        return self.stages[i] / self.targets[i].name

    def commit(self) -> None:
        """Put every new output in place of its previous version, or, if any step fails, put
        every previous version back."""
        check_interrupted()
        done: list[tuple[Path, Path, bool]] = []
        with deferred_signals():
            try:
                for stage, target in zip(self.stages, self.targets, strict=True):
                    new = stage / target.name
                    if not new.is_dir():
                        raise RuntimeError(f"nothing was written to {new}")
                    had_previous = target.exists()
                    if had_previous:
                        target.rename(stage / PARKED)
                    done.append((stage, target, had_previous))
                    new.rename(target)
            except BaseException:
                for stage, target, had_previous in reversed(done):
                    if target.exists() and not (stage / target.name).exists():
                        target.rename(stage / target.name)
                    if had_previous:
                        (stage / PARKED).rename(target)
                raise

    def _remove_stages(self) -> None:
        for stage in self.stages:
            shutil.rmtree(stage, ignore_errors=True)

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._remove_stages()
        if isinstance(err, Interrupted):
            log.debug("removed the staging folders %s", ", ".join(map(str, self.stages)))


# ---------------------------------------------------------------------------------------------
# signals


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived. A BaseException, like KeyboardInterrupt, so that no library's
    `except Exception` swallows it on its way to the clean-up."""

    def __init__(self, signum: int, after_commit: bool = False):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.after_commit = after_commit

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


_deferred: list[int] | None = None
"""while a swap runs: the signals that arrived, to be raised once it is complete."""
_received: int | None = None
"""the signal that arrived, kept because a handler's exception can be swallowed (raised inside
a __del__ or similar, Python prints "Exception ignored" and carries on)."""
_raised = False
"""whether Interrupted for `_received` is on its way (then no need to deliver it again)."""
_armed = False
"""whether signals_raise's handler is installed: a late re-delivery must not hit the default."""
_in_fork = False
_fork_guard = 0


def check_interrupted() -> None:
    """Raise Interrupted if a signal arrived whose exception got lost; called between stages
    and before the swap, so a stopped build never puts its outputs in place."""
    if _received is not None:
        raise Interrupted(_received)


def _resend_soon(signum: int) -> None:
    """Deliver `signum` to this process again in a moment, from a helper thread, so that its
    handler runs at an ordinary point of the main thread."""

    def resend() -> None:
        if _armed and not _raised:
            os.kill(os.getpid(), signum)

    timer = threading.Timer(0.01, resend)
    timer.daemon = True
    timer.start()


def guard_forks() -> None:
    """Hold signals while this process forks. Raising in the middle of the fork machinery is
    unsafe: an exception in logging's at-fork callback leaves its module lock held (every later
    log call hangs), and Python swallows exceptions there anyway. Callbacks registered last run
    first before a fork and last after it, so call this once every library that registers its
    own is imported (build calls it right before the render forks its page workers); only the
    latest registration acts, as at-fork callbacks cannot be removed."""
    global _fork_guard
    _fork_guard += 1
    mine = _fork_guard

    def before() -> None:
        global _in_fork
        if _fork_guard == mine:
            _in_fork = True

    def after_in_parent() -> None:
        global _in_fork
        if _fork_guard == mine:
            _in_fork = False
            if _received is not None and not _raised:
                _resend_soon(_received)

    os.register_at_fork(before=before, after_in_parent=after_in_parent)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGTERM/SIGINT for the few renames of a swap, so one can never stop between them;
    a signal that arrived meanwhile is raised once the swap is complete."""
    global _deferred
    _deferred = []
    try:
        yield
    finally:
        pending, _deferred = _deferred, None
    if pending:
        raise Interrupted(pending[0], after_commit=True)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise Interrupted in this process. Processes forked
    from it (render's page workers) inherit the handler; there a signal just ends the process
    the default way, quietly: the parent does the clean-up and the talking."""
    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        global _received, _raised
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if _deferred is not None:
            _deferred.append(signum)
            return
        _received = signum
        if not _in_fork and not _raised:  # in a fork: raised after it, see guard_forks
            _raised = True
            raise Interrupted(signum)

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        yield
        return
    global _received, _raised, _armed
    _received, _raised, _armed = None, False, True
    default_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        # The handler's exception was raised where Python cannot propagate it: instead of
        # printing "Exception ignored" and carrying on, deliver the signal again.
        global _raised
        if isinstance(info.exc_value, Interrupted):
            _raised = False
            _resend_soon(info.exc_value.signum)
        else:
            default_hook(info)

    sys.unraisablehook = unraisable
    guard_forks()
    try:
        yield
    finally:
        _armed = False
        for sig, old in previous.items():
            signal.signal(sig, old)
        sys.unraisablehook = default_hook
        _received, _raised = None, False
