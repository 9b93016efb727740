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

Memory and disk: one copy of the state (Pass1State / Pass2State, see their docstrings) and, in
the examples stage, the example arrays (P x ctx x 4 bytes, twice with ablation).
"""

from __future__ import annotations

import hashlib
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

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads folder_for without it
    import torch

log = logging.getLogger(__name__)

VERSION = 3
"""bumped when what a checkpoint holds changes: older files are then refused, not misread."""


def folder_for(store: Path) -> Path:
    return store.parent / f".{store.name}.checkpoint"


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
        if not path.is_file():
            return ck
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a file cut short by a crash mid-write cannot happen (rename)
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
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        torch.save({**content, "digest": self.digest}, tmp)
        os.replace(tmp, self.path)
        self.writes += 1
        self.last = time.monotonic()


def remove(store: Path) -> None:
    """After the new store and site are in place: the checkpoints are no longer needed."""
    shutil.rmtree(folder_for(store), ignore_errors=True)


def as_tensors(array: np.ndarray | None) -> torch.Tensor | None:
    import torch

    return None if array is None else torch.from_numpy(np.ascontiguousarray(array))
