"""Input paths that exist but cannot be read as one: a symbolic link loop or one that leads
nowhere, a FIFO, a device (`/dev/zero`) or a socket. Each input (`--model`, `--sae`, `--corpus`,
`--prompts`, `--explanations`) is checked before it is opened, so that the message names the real
problem instead of "not found" or "no files under", and a FIFO or `/dev/zero` is never read
(which blocks or never ends)."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

from generator.errors import UserError


def path_problem(path: Path) -> str | None:
    """Why `path` cannot be an input file or folder, in words; None when it is a regular file,
    a folder, or absent (each caller says what a missing input means for it)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is a symbolic link to nothing" if path.is_symlink() else None
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"cannot be read ({err.strerror})"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
    return f"is {kind}, not a file or folder"


def check_input_path(flag: str, path: Path, fix: str) -> None:
    """Refuse, in one line, an input path that exists but cannot be read as a file or folder;
    `fix` says what to pass instead."""
    problem = path_problem(Path(path).expanduser())
    if problem:
        raise UserError(f"{flag} {path} {problem}; {fix}")
