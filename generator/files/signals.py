"""Signals during a run: SIGTERM (Slurm, `timeout`) and SIGINT raise `Interrupted` in the main
process, so that the same clean-up runs as for any failure and the CLI says so on one line.

- `signals_raise` installs the handlers for a command's whole run; a process forked from it (a
  page worker) instead dies the default way, quietly: the parent does the clean-up and talking.
- `deferred_signals` holds a signal back while the outputs are swapped (generator/files/
  outputs.py), and raises it once the swap is complete.
- `guard_forks` keeps a signal from being raised inside a library's at-fork callbacks, and
  `check_interrupted` raises one that arrived while it could not be.

The handlers' state is this module's (one process has one set of signal handlers).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived. A BaseException, like KeyboardInterrupt, so that no library's
    `except Exception` swallows it on its way to the clean-up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

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
    outer = _deferred  # nested: the outermost block raises
    _deferred = [] if outer is None else outer
    try:
        yield
    finally:
        pending, _deferred = _deferred, outer
    if pending and outer is None:
        raise Interrupted(pending[0])


_finish: Any = None
"""once the command is done and the process about to end: the handler that ends it at once."""


def exit_quietly_on_signal(code: int) -> None:
    """The command is complete and the process is about to end: from now on, SIGTERM / SIGINT
    (during the interpreter's shutdown, which takes seconds with torch loaded) end it at once
    with the command's exit code `code`, not 143."""
    global _finish

    def finish(signum: int, frame: FrameType | None) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    _finish = finish
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, finish)
    except ValueError:  # not the main thread: the embedding application's handlers stay
        _finish = None


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
            signal.signal(sig, _finish or old)
        sys.unraisablehook = default_hook
        _received, _raised = None, False
