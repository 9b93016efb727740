"""The build's two output folders, `--store` and `--out`: guarded, staged and swapped in as a pair.

- Guard (before any compute), the same for every command that writes a folder (`build`, `render`,
  `export`, `demo-train`): each output may be a new folder, an empty one, or a previous output of
  the same kind (`OutputKind.owns`: a store carries STORE_MARKER, a site SITE_MARKER). Anything else
  (a file, a folder of the user's own, the working directory or one of its parents, the two options
  naming the same folder or one inside the other) is refused: replacing it would delete the
  user's data. Files a user added inside a previous output are carried into the new one
  (generator/files/manifest.py).
- Staging: a `.NAME.tmp-PID-HOST-RANDOM` folder beside each output is made before compute (so an
  unwritable location fails in seconds), the new output is written inside it, and `commit` swaps
  both in with renames, so a failed or interrupted build leaves both previous outputs, as a pair.
- Signals (generator/files/signals.py) that arrive during the swap are deferred until it is done.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from generator.errors import UserError
from generator.files.atomic import PARKED, make_temp_dir, sweep_stale
from generator.files.manifest import carry_over
from generator.files.signals import Interrupted, check_interrupted, deferred_signals

log = logging.getLogger(__name__)

STORE_MARKER = ".feature-browser-store"
"""an empty file in every store written by write_store: the store guard's proof of ownership."""
SITE_MARKER = ".nojekyll"
"""written by render_site into every site (GitHub Pages needs it); the same file render checks."""
EXPORT_MARKER = ".feature-browser-export"
"""an empty file in every export folder: the export guard's proof of ownership."""


def is_store(path: Path) -> bool:
    # Stores written before STORE_MARKER existed are recognised by their two defining files.
    return (path / STORE_MARKER).is_file() or (
        (path / "meta.json").is_file() and (path / "latents.parquet").is_file())


def is_site(path: Path) -> bool:
    return (path / SITE_MARKER).is_file()


def is_export(path: Path) -> bool:
    return (path / EXPORT_MARKER).is_file()


def is_demo_artifacts(path: Path) -> bool:
    return all((path / name).exists() for name in ("metrics.json", "model", "sae"))


@dataclass(frozen=True)
class OutputKind:
    """A kind of folder the tool writes and may later replace."""

    what: str
    """its name in messages: "site", "store", ..."""
    owns: Callable[[Path], bool]
    """whether an existing folder is a previous output of this kind."""
    names: frozenset[str]
    """the top-level names (glob patterns) the tool writes in it: in a previous output without a
    manifest, everything else is the user's and is carried over."""


SITE = OutputKind("site", is_site, frozenset({
    SITE_MARKER, "index.html", "features", "embed", "search", "map", "static", "seqs", "cards",
    "corpus", "prompts"}))
STORE = OutputKind("store", is_store, frozenset({STORE_MARKER, "meta.json", "*.parquet"}))
EXPORT = OutputKind("Neuronpedia export", is_export, frozenset({
    EXPORT_MARKER, "batch-*.json", "run_settings.json"}))
DEMO = OutputKind("demo artifacts folder", is_demo_artifacts, frozenset({
    "metrics.json", "model", "sae"}))


def check_output(flag: str, path: Path, kind: OutputKind) -> Path:
    """`path` resolved, or refused in one line (check_output_folder) as the `kind` output of
    option `flag`."""
    resolved = Path(path).expanduser().resolve()
    check_output_folder(flag, resolved, kind.what, resolved.is_dir() and kind.owns(resolved))
    return resolved


def check_output_folder(flag: str, path: Path, what: str, ours: bool) -> None:
    """Refuse, in one line, `path` as the folder of option `flag` unless it is new, empty or
    `ours` (a previous output of this tool, which may be replaced); `what` names the output."""
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise UserError(f"{flag} {path} is the current folder or one of its parents, which would "
                        f"be replaced; pass a new folder, e.g. {flag} {what}")
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
    check_output("--out", out_r, SITE)
    check_output("--store", store_r, STORE)
    check_apart(out_r, store_r, "a build")
    for flag, path in (("--out", out_r), ("--store", store_r)):
        check_writable(flag, path)
    return out_r, store_r


def _existing(path: Path) -> Path:
    """`path` resolved, or its nearest existing parent."""
    path = Path(path).expanduser().resolve()
    while not path.exists():
        path = path.parent
    return path


def check_writable(flag: str, path: Path) -> None:
    """Refuse `path` in one line when its nearest existing parent cannot be written to."""
    parent = _existing(path.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write in {parent} (permission denied); choose "
                        f"a folder you can write to for {flag}")


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


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def check_space(needs: dict[str, tuple[Path, int]]) -> None:
    """Refuse, in one line and before compute, when the disks that will hold the outputs have
    clearly too little free space: `needs` maps an option to its folder and a lower bound of the
    bytes it will take (outputs on one disk add up)."""
    by_disk: dict[int, list[tuple[str, Path, int]]] = {}
    for flag, (path, size) in needs.items():
        by_disk.setdefault(_existing(path).stat().st_dev, []).append((flag, path, size))
    for entries in by_disk.values():
        need = sum(size for _, _, size in entries)
        free = shutil.disk_usage(_existing(entries[0][1])).free
        if free < need:
            named = " and ".join(f"{flag} {path}" for flag, path, _ in entries)
            raise UserError(f"{named} need at least {_mb(need)} on their disk, which has "
                            f"{_mb(free)} free; free some space or choose a folder on a larger "
                            "disk")


def disk_full_error(err: OSError, folders: dict[str, Path], need: int | None,
                    kept: str) -> UserError:
    """One line for a write that failed on a full disk: which folder, how much is free now that
    the partial output is gone, the run's need when known, and what was kept."""
    where = str(err.filename or "")
    flag, folder = next(((f, p) for f, p in folders.items() if where.startswith(str(p.parent))),
                        next(iter(folders.items())))
    free = shutil.disk_usage(_existing(folder)).free
    needs = f"; the run needs at least {_mb(need)} there" if need else ""
    return UserError(f"the disk holding {flag} {folder} is full ({err.strerror}; "
                     f"{_mb(free)} free now, partial output removed{needs}); free some space or "
                     f"choose a folder on a larger disk; {kept}")


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} KB"


class StagedOutputs:
    """Staging folders for several outputs, swapped in together by `commit`.

    On leaving the block, the staging folders go: after a commit they hold the previous outputs,
    otherwise the unfinished new ones."""

    def __init__(self, targets: dict[Path, OutputKind]):
        self.targets = [Path(t) for t in targets]
        self.kinds = list(targets.values())
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

    def commit(self, then: Callable[[], None] | None = None) -> None:
        """Put every new output in place of its previous version, or, if any step fails, put
        every previous version back; then run `then` (a signal waits for both)."""
        check_interrupted()
        for stage, target, kind in zip(self.stages, self.targets, self.kinds, strict=True):
            carry_over(target, stage / target.name, kind.names)
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
            if then is not None:
                then()

    def _remove_stages(self) -> None:
        for stage in self.stages:
            shutil.rmtree(stage, ignore_errors=True)

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._remove_stages()
        if isinstance(err, Interrupted):
            log.debug("removed the staging folders %s", ", ".join(map(str, self.stages)))
