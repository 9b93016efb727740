"""The build's two output folders, `--store` and `--out`: guarded, staged and swapped in as a pair.

- Guard (before any compute): each may be a new folder, an empty one, or a previous output of the
  same kind (a store carries STORE_MARKER, a site render's SITE_MARKER). Anything else (a file, a
  folder of the user's own, the working directory or one of its parents, the two options naming
  the same folder or one inside the other) is refused: replacing it would delete the user's data.
- Staging: a `.NAME.tmp-PID-HOST-RANDOM` folder beside each output is made before compute (so an
  unwritable location fails in seconds), the new output is written inside it, and `commit` swaps
  both in with renames, so a failed or interrupted build leaves both previous outputs, as a pair.
- Signals (generator/files/signals.py) that arrive during the swap are deferred until it is done.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from types import TracebackType

from generator.errors import UserError
from generator.files.atomic import PARKED, make_temp_dir, sweep_stale
from generator.files.signals import Interrupted, check_interrupted, deferred_signals

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
    check_apart(out_r, store_r, "a build")
    for flag, path in (("--out", out_r), ("--store", store_r)):
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {path}: cannot write in {parent} (permission denied); choose "
                            f"a folder you can write to for {flag}")
    return out_r, store_r


def check_apart(out: Path, store: Path, replacer: str) -> None:
    """Refuse a site folder inside the store folder or the other way round: `replacer` (a build,
    or the next build after a render) replaces each as a whole, and would delete the other."""
    out_r, store_r = Path(out).expanduser().resolve(), Path(store).expanduser().resolve()
    if out_r == store_r:
        raise UserError(f"--out and --store are the same folder {out_r}; give each its own folder, "
                        "e.g. --out site --store store")
    if out_r in store_r.parents:
        raise UserError(f"--store {store_r} is inside --out {out_r}, which {replacer} replaces; "
                        "put them side by side, e.g. --out site --store store")
    if store_r in out_r.parents:
        raise UserError(f"--out {out_r} is inside --store {store_r}, which {replacer} replaces; "
                        "put them side by side, e.g. --out site --store store")


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
