"""Compare two rendered sites (or stores) file by file, for refactors that must not change output.

    python bench/compare_sites.py OLD NEW [--ignore-assets]

Without options every file must be byte-identical. `--ignore-assets` is for a change of the
static files themselves (static/*.js, *.css): it leaves out static/ and, in HTML pages, the
`<script src=static/...>` tags and the content hashes in asset names, and says how many pages
differ only there. Exit status 1 at the first other difference.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

SCRIPT_TAG = re.compile(r'<script src="[^"]*static/[\w-]+\.[0-9a-f]{10}\.js"></script>\n?')
ASSET_HASH = re.compile(r"static/([\w-]+)\.[0-9a-f]{10}\.")


def without_assets(html: str) -> str:
    return ASSET_HASH.sub(r"static/\1.", SCRIPT_TAG.sub("", html))


def files(root: Path, ignore_assets: bool) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")
            if p.is_file() and not (ignore_assets and p.relative_to(root).parts[0] == "static")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--ignore-assets", action="store_true")
    args = parser.parse_args()
    old, new = files(args.old, args.ignore_assets), files(args.new, args.ignore_assets)
    if old != new:
        print(f"different file lists: {sorted(map(str, old ^ new))[:10]}")
        return 1
    same = assets_only = 0
    for rel in sorted(old):
        a, b = (args.old / rel).read_bytes(), (args.new / rel).read_bytes()
        if a == b:
            same += 1
        elif (args.ignore_assets and rel.suffix == ".html"
              and without_assets(a.decode()) == without_assets(b.decode())):
            assets_only += 1
        else:
            print(f"{rel} differs")
            return 1
    print(f"{len(old)} files: {same} byte-identical"
          + (f", {assets_only} identical but for the static assets' tags" if assets_only else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
