"""The index table's quality columns and flag filter at real SAE widths, in Chromium from file://.

The demo store is tiled up to each width (bench/site_tile.py) and only the index page and its
table files are written (no latent pages: they are not what this measures). Prints, per width:
the table files' bytes (all sort keys) and the flags files' share of them, then the milliseconds
and bytes loaded to sort by the share of activation at BOS, to hide dense latents, to show only
latents mostly at BOS (rare: their rows lie in many files), and to page on.

    .venv/bin/python bench/quality_table.py --store /tmp/demo_store --sizes 16384 131072
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from chromium import file_bytes, open_index
from site_tile import tile_store

from generator.site.contexts import TABLE_PAGE
from generator.site.quality import AT_BOS, DENSE
from generator.site.writer import SiteWriter
from generator.store.io import read_store


def write_index(data, out: Path) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    writer = SiteWriter(data, out, {}, True, TABLE_PAGE, 64 * 1024)
    writer.setup()
    table = writer.write_table()
    writer.render("index.html", "index.html", page=writer.pages.index_page(1, table))
    return time.perf_counter() - start


def measure(out: Path) -> list[tuple[str, float, int]]:
    steps: list[tuple[str, float, int]] = []
    with open_index(out) as (page, loaded):

        def step(name: str, action, done: str) -> None:  # type: ignore[no-untyped-def]
            seen = len(loaded)
            page.evaluate("window.fbDone = false")
            start = page.evaluate("performance.now()")
            action()
            page.wait_for_function(done)
            ms = page.evaluate("performance.now()") - start
            steps.append((name, ms, file_bytes(loaded[seen:])))

        step("sort by BOS share", lambda: page.click("[data-sort=b]"),
             "document.querySelector('button[data-sort=b]').parentNode.getAttribute('aria-sort')"
             " === 'descending' && !document.querySelector('#lt tbody a[href$=\"/0.html\"]')")
        step("hide dense", lambda: page.select_option(f"select[data-flag='{DENSE}']", "hide"),
             "document.getElementById('lfn').textContent !== ''")
        step("next page", lambda: page.click("[data-page='1']"),
             "document.getElementById('pg').textContent.startsWith('page 2 ')")

        def only_bos() -> None:
            page.select_option(f"select[data-flag='{DENSE}']", "")
            page.select_option(f"select[data-flag='{AT_BOS}']", "only")

        step("only mostly-at-BOS", only_bos,
             "document.getElementById('lfn').textContent !== '' && "
             "document.getElementById('pg').textContent.startsWith('page 1 ')")
        step("sort by density (flags reloaded)", lambda: page.click("[data-sort=d]"),
             "document.querySelector('button[data-sort=d]').parentNode.getAttribute('aria-sort')"
             " === 'descending'")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/demo_store"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 131072])
    parser.add_argument("--out", type=Path, default=Path("bench/out/quality_table"))
    args = parser.parse_args()
    base = read_store(args.store)
    for size in args.sizes:
        data = tile_store(base, size)
        data = replace(data, latents=replace(data.latents, map_x=None, map_y=None))
        out = args.out / str(size)
        seconds = write_index(data, out)
        files = [p for p in (out / "search").rglob("*.js")]
        total = sum(p.stat().st_size for p in files)
        flags = sum(p.stat().st_size for p in files if p.name == "q.js")
        print(f"{size:>7} latents: table written in {seconds:.1f} s, {total / 1e6:.1f} MB in "
              f"{len(files)} files ({total / size:.0f} B/latent; flags files {flags / 1e6:.2f} MB)",
              flush=True)
        for name, ms, size_loaded in measure(out):
            print(f"        {name:<34} {ms:7.1f} ms  {size_loaded / 1e3:8.1f} KB loaded", flush=True)
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
