"""What the tool wrote in an output folder, so that a rebuild never deletes what it did not write.

Every output folder (a site, a store, an export, the demo artifacts) gets, as the last step before
it is swapped in, a manifest `.feature-browser-files`: the relative path of every file in it, one
per line, sorted. Whatever a user adds later (GitHub Pages' `CNAME`, a `robots.txt`, notes) is not
in it; when the next run replaces the folder, those files are carried into the new version
(hard-linked, or copied where links cannot be made), and one log line says which.

A folder written before manifests existed has none: then the files at its top level whose names
the tool never writes there (`tool_names`, glob patterns) are the user's. A user's file at a path the new
version also writes is not overwritten: the swap is refused in one line naming it.

Memory: the set of paths (about 60 bytes a file: 16 MB for a 131,072-latent site's 266k files).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from generator.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = ".feature-browser-files"


def _walk(folder: Path) -> Iterable[str]:
    """Relative paths of every file, symbolic link and empty folder under `folder`, unsorted."""
    for root, dirs, files in os.walk(folder):
        rel_root = os.path.relpath(root, folder)
        prefix = "" if rel_root == "." else rel_root + "/"
        for name in files:
            yield prefix + name
        for name in dirs:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.listdir(path):
                yield prefix + name


def write_manifest(folder: Path) -> None:
    """List every file now in `folder` in its manifest (call it when the folder is complete)."""
    paths = sorted(p for p in _walk(folder) if p != MANIFEST)
    (folder / MANIFEST).write_text("".join(p + "\n" for p in paths), encoding="utf-8")


def read_manifest(folder: Path) -> set[str] | None:
    """The paths the tool wrote in `folder`, or None when it has no manifest."""
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return {line for line in text.split("\n") if line} | {MANIFEST}


def user_files(folder: Path, tool_names: frozenset[str] = frozenset()) -> list[str]:
    """The paths in a previous output `folder` that the tool did not write, sorted.

    `tool_names`: the top-level names the tool writes (glob patterns), for a folder without a
    manifest."""
    if not folder.is_dir():
        return []
    written = read_manifest(folder)
    if written is None:
        return sorted(p for p in _walk(folder)
                      if not any(fnmatchcase(p.split("/")[0], name) for name in tool_names))
    return sorted(p for p in _walk(folder) if p not in written)


def carry_over(previous: Path, new: Path, tool_names: frozenset[str] = frozenset()) -> list[str]:
    """Put the user's files of `previous` into `new` (which replaces it next), at the same paths;
    refused in one line, before anything is linked, when `new` holds one of those paths itself.
    Returns the paths carried."""
    carried = user_files(previous, tool_names)
    clash = [p for p in carried if os.path.lexists(new / p)]
    if clash:
        raise UserError(f"{previous} holds {clash[0]!r}, which is not the tool's but the new "
                        f"version writes a file of that name; move it out of {previous} and "
                        "run again")
    for rel in carried:
        _link_or_copy(previous / rel, new / rel)
    if carried:
        shown = ", ".join(carried[:5]) + (f" and {len(carried) - 5} more" if len(carried) > 5 else "")
        log.info("kept %d file(s) you added to %s: %s", len(carried), previous.name, shown)
    return carried


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir(exist_ok=True)
    else:
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed: a copy
            shutil.copy2(src, dst)
