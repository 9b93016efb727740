"""Checkpoints: a long build killed (kill -9, a lost node, a wall-clock limit) and started again
with the same arguments goes on from where it was, and ends with the same bytes.

Each rank writes its own file `rank-R-of-W.pt` in a folder beside the store,
`.<store name>.checkpoint/`, atomically (a temporary file, then a rename), every
`--checkpoint-minutes` during pass 1, pass 2 and the examples. A file holds the stage, the
number of this rank's plan batches done, and the state so far (tensors and plain numbers only;
read back with weights_only=True). The states merge exactly and the batch grid is fixed by the
batch size saved with them, so the resumed build computes exactly what the uninterrupted one
would have. A file made from other inputs or settings (its fingerprint differs) is refused; the
folder is removed once the new store and site are in place.

Each file ends with the sha256 of its bytes (SEAL): a damaged file is refused, not resumed from.
Temporary files of a run killed mid-write are removed by the next.

Memory and disk: two copies of the state while a file is written (the state and its bytes;
Pass1State / Pass2State, see their docstrings) and, in
the examples stage, the example arrays (P x ctx x 4 bytes, twice with ablation).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generator.errors import UserError
from generator.files.atomic import pid_alive

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads folder_for without it
    import torch

log = logging.getLogger(__name__)

VERSION = 4
"""bumped when what a checkpoint holds changes: older files are then refused, not misread."""


def folder_for(store: Path) -> Path:
    return store.parent / f".{store.name}.checkpoint"


def resume_hint(store: Path) -> str:
    """How a stopped build goes on from its checkpoint, in words ("" when it has none)."""
    folder = folder_for(store)
    return f"the same command resumes from the checkpoint in {folder}" if folder.is_dir() else ""


def fingerprint(parts: dict[str, Any]) -> str:
    """A digest of everything that changes the numbers (inputs, settings, process count)."""
    text = repr(sorted((k, repr(v)) for k, v in parts.items()))
    return hashlib.sha256(f"v{VERSION}:{text}".encode()).hexdigest()[:16]


def tokens_digest(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens).tobytes()).hexdigest()[:16]


@dataclass
class Checkpoint:
    """This rank's checkpoint file: what was loaded from it, and when to write the next."""

    path: Path
    digest: str
    every_s: float
    """seconds between writes; 0 = after every batch."""
    saved: dict[str, Any] | None = None
    """the file's content when the build resumed from it (None: a fresh start)."""
    last: float = field(default_factory=time.monotonic)
    writes: int = 0

    @classmethod
    def open(cls, store: Path, rank: int, world: int, digest: str, minutes: float) -> Checkpoint:
        """This rank's file, read if it exists; refused with one line if made from other inputs."""
        import torch

        path = folder_for(store) / f"rank-{rank}-of-{world}.pt"
        ck = cls(path, digest, minutes * 60)
        _remove_stale_temporaries(path)
        if not path.is_file():
            return ck
        raw = path.read_bytes()
        payload, seal = memoryview(raw)[:-len(SEAL) - 32], raw[-len(SEAL) - 32:]
        if seal != SEAL + hashlib.sha256(payload).digest():
            raise UserError(f"checkpoint {path} is damaged (checksum mismatch); delete "
                            f"{path.parent} to start afresh") from None
        try:
            saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 (checksummed, so another version's format)
            raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}); delete "
                            f"{path.parent} to start afresh") from None
        if not isinstance(saved, dict) or saved.get("digest") != digest:
            raise UserError(f"checkpoint {path.parent} was made from other inputs or settings "
                            "than this build's; run the same command to resume it, or delete "
                            "that folder to start afresh")
        ck.saved = saved
        log.info("resuming from checkpoint %s: %s, %d batches of this process done",
                 path.parent, saved["stage"], saved["done"])
        return ck

    def resumes(self, stage: str) -> dict[str, Any] | None:
        """The saved content if the build stopped in `stage` (None: the stage starts afresh)."""
        return self.saved if self.saved is not None and self.saved["stage"] == stage else None

    def stage_done(self, stage: str) -> bool:
        """True if the build had already got past `stage` when it stopped."""
        order = ["pass1", "pass2", "examples"]
        return self.saved is not None and order.index(self.saved["stage"]) > order.index(stage)

    def tick(self, stage: str, done: int, content: Callable[[], dict[str, Any]]) -> None:
        """Write `content()` if the interval has passed (the content is only built then)."""
        if time.monotonic() - self.last < self.every_s:
            return
        self.write({**content(), "stage": stage, "done": done})

    def write(self, content: dict[str, Any]) -> None:
        """Write atomically (a temporary file renamed over the last one), with a sha256 of the
        bytes at the end of the file, which `open` checks; a full disk is one line, and the
        partial file is removed."""
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        buffer = io.BytesIO()
        torch.save({**content, "digest": self.digest}, buffer)
        payload = buffer.getbuffer()
        try:
            with open(tmp, "wb") as f:
                f.write(payload)
                f.write(SEAL + hashlib.sha256(payload).digest())
            os.replace(tmp, self.path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            free = shutil.disk_usage(self.path.parent).free
            raise UserError(f"cannot write the checkpoint {self.path} ({err.strerror}; it takes "
                            f"{len(payload) / 1e6:,.0f} MB, {free / 1e6:,.0f} MB are free); free "
                            "some space, or pass --checkpoint-minutes with a larger value") from None
        self.writes += 1
        self.last = time.monotonic()


SEAL = b"feature-browser checkpoint sha256:"
"""ends every checkpoint file, followed by the sha256 of the bytes before it."""


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of this rank's checkpoint whose writing process is gone (killed in the
    middle of a write): they would otherwise pile up, one per killed run."""
    for tmp in path.parent.glob(path.stem + ".tmp-*"):
        pid = tmp.suffix.removeprefix(".tmp-")
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def remove(store: Path) -> None:
    """After the new store and site are in place: the checkpoints are no longer needed."""
    shutil.rmtree(folder_for(store), ignore_errors=True)


def as_tensors(array: np.ndarray | None) -> torch.Tensor | None:
    import torch

    return None if array is None else torch.from_numpy(np.ascontiguousarray(array))
