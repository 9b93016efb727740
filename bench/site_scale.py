"""Site at real SAE widths: render time, size and search / table speed in Chromium from file://;
for the packed site (`--modes packed`, or `--packed`; `packed-compact` is the packed site with
`--compact`'s content) also a latent's first paint over HTTP.

The real demo store (1,024 latents; build it once with
`feature-browser build --store /tmp/demo_store --out /tmp/demo_site --quiet`) is tiled up to each
width by bench/site_tile.py, rendered in the default and the compact mode, and opened from file://
in Debian's Chromium through playwright. Prints, per (width, mode): render seconds, site bytes,
KB per latent, file count, the bytes the index page loaded before the first search result, the
milliseconds from the first keystroke to the first result, and the milliseconds to sort the
table by density and to page it.

    .venv/bin/python bench/site_scale.py --store /tmp/demo_store --sizes 65536 131072
    .venv/bin/python bench/site_scale.py --sizes 262144 1048576 --packed

The goals (checked here, never in timed tests): a 65,536-latent default site and a 131,072-latent
compact site within 1 GB (<= 15 KB and <= 7.6 KB a latent all-in), first search results within
100 ms of a keystroke with at most 1 MB loaded before them. The packed site: 1,048,576 latents in
<= 1 GB and <= 20,000 files, rendered in <= 10 minutes, a latent drawn <= 150 ms after the
navigation to latent.html#<id> (median over FIRST_PAINT latents, each in a fresh browser context
served from 127.0.0.1 under a sub-path, as GitHub Pages serves it) with <= 300 KB loaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from chromium import CHROMIUM, file_bytes, open_index
from site_tile import tile_store

from generator.site.render import render_site
from generator.store.io import read_store

GOALS = {"default": 15_000, "compact": 7_600, "packed": 1_000, "packed-compact": 1_000}
"""bytes per latent all-in: 1 GB over 65,536 (with headroom) and over 131,072 latents."""
QUERY = "self"
FIRST_PAINT = 7
"""latents whose first paint is measured (spread over the ids), each in a fresh context."""


def measure_browser(site: Path, query: str, url: str | None = None) -> dict[str, float]:
    """Search and table timings on the index, from file:// or, given `url`, over HTTP."""
    with open_index(site, url) as (page, loaded):
        page.evaluate("""() => {
            window.fbT = {};
            document.getElementById('q').addEventListener('keydown',
                () => { if (!window.fbT.key) window.fbT.key = performance.now(); }, true);
            new MutationObserver(() => {
                if (!window.fbT.first && document.querySelector('#qr li'))
                    window.fbT.first = performance.now();
            }).observe(document.getElementById('qr'), {childList: true});
        }""")
        page.focus("#q")
        page.keyboard.type(query)
        page.wait_for_function("window.fbT.first > 0")
        before = list(loaded)
        # the packed site shows its results first and their labels as the id files arrive
        page.wait_for_function("document.querySelector('#qr li[role=option] .note')"
                               ".textContent !== ''")
        labelled = page.evaluate("performance.now()")
        to_labels = list(loaded)
        times = page.evaluate("window.fbT")
        # the table: sort by density (descending), then the next page
        start = page.evaluate("performance.now()")
        page.click("[data-sort=d]")
        page.wait_for_function("document.querySelector('#lt th:nth-child(2)')"
                               ".getAttribute('aria-sort') === 'descending' && "
                               "document.querySelector('#lt tbody tr td a').textContent !== '0'")
        sort_ms = page.evaluate("performance.now()") - start
        start = page.evaluate("performance.now()")
        page.click("[data-page='1']")
        page.wait_for_function("document.getElementById('pg').textContent.startsWith('page 2 ')")
        page_ms = page.evaluate("performance.now()") - start
    return {"bytes_before_first_result": file_bytes(before, site, url),
            "files_before_first_result": len(before),
            "bytes_to_labels": file_bytes(to_labels, site, url),
            "ms_to_first_result": times["first"] - times["key"],
            "ms_to_labels": labelled - times["key"], "ms_sort": sort_ms,
            "ms_next_page": page_ms}


@contextmanager
def served(site: Path) -> Iterator[str]:
    """`site` served from 127.0.0.1 under a sub-path (as GitHub Pages serves it): its URL."""
    from generator.site.serve import make_server

    server = make_server(site.parent, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{site.name}/"
    finally:
        server.shutdown()
        server.server_close()


def measure_first_paint(site: Path, d_sae: int, base: str) -> dict[str, float]:
    """Median ms from navigation to the drawn latent (viewer.js sets window.fbDrawnAt), and the
    median bytes (on disk) of what the page had loaded by then, over FIRST_PAINT latents."""
    from playwright.sync_api import sync_playwright

    times, sizes = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        for k in range(FIRST_PAINT):
            i = (k * 2654435761) % d_sae  # spread over the ids
            context = browser.new_context()
            page = context.new_page()
            urls: list[str] = []
            page.on("request", lambda r, urls=urls: urls.append(r.url))
            page.goto(base + f"latent.html#{i}")
            page.wait_for_function(f"window.fbShown === {i}")
            times.append(page.evaluate("window.fbDrawnAt"))
            sizes.append(file_bytes(urls, site, base))
            context.close()
        browser.close()
    return {"ms_first_paint": statistics.median(times), "ms_first_paint_max": max(times),
            "bytes_first_paint": statistics.median(sizes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/demo_store"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[65536, 131072])
    parser.add_argument("--modes", nargs="+", default=["default", "compact"],
                        choices=["default", "compact", "packed", "packed-compact"])
    parser.add_argument("--packed", action="store_true", help="the same as --modes packed")
    parser.add_argument("--out", type=Path, default=Path("bench/out/site_scale"))
    parser.add_argument("--keep", action="store_true", help="keep the rendered sites")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--render-only", action="store_true",
                        help="render and measure the files, no browser (e.g. to time two commits "
                             "one after the other: run this file from each one's checkout)")
    args = parser.parse_args()
    if args.packed:
        args.modes = ["packed"]
    base = read_store(args.store)
    results = []
    for size in args.sizes:
        data = tile_store(base, size)
        for mode in args.modes:
            out = args.out / f"{size}-{mode}"
            start = time.perf_counter()
            packed = mode.startswith("packed")
            report = render_site(data, out, quiet=True, compact=mode.endswith("compact"),
                                 workers=args.workers, packed=packed)
            seconds = time.perf_counter() - start
            row = {"latents": size, "mode": mode, "render_s": round(seconds, 1),
                   "site_bytes": report.total_bytes, "files": report.files,
                   "kb_per_latent": round(report.bytes_per_latent / 1000, 2),
                   "goal_kb": GOALS[mode] / 1000,
                   "bytes_by_part": report.bytes_by_part}
            if args.render_only:
                print(f"{size:>7} {mode:<8} render {row['render_s']:7.1f} s  "
                      f"{report.total_bytes / 1e9:6.3f} GB  {report.files:>7} files", flush=True)
                results.append(row)
                if not args.keep:
                    shutil.rmtree(out)
                continue
            if packed:  # served over HTTP, as it must be
                with served(out) as url:
                    row.update(measure_browser(out, QUERY, url))
                    row.update(measure_first_paint(out, size, url))
            else:
                row.update(measure_browser(out, QUERY))
            results.append(row)
            print(f"{size:>7} {mode:<8} render {row['render_s']:7.1f} s  "
                  f"{report.total_bytes / 1e9:6.3f} GB  {row['kb_per_latent']:6.2f} KB/latent "
                  f"(goal {row['goal_kb']})  {report.files:>7} files  "
                  f"{row['bytes_before_first_result'] / 1e3:7.1f} KB before first result  "
                  f"{row['ms_to_first_result']:6.1f} ms to first result "
                  f"({row['ms_to_labels']:.0f} ms, {row['bytes_to_labels'] / 1e3:.1f} KB to its "
                  "label)  "
                  f"sort {row['ms_sort']:5.0f} ms  next page {row['ms_next_page']:5.0f} ms"
                  + (f"  first paint {row['ms_first_paint']:5.0f} ms (max "
                     f"{row['ms_first_paint_max']:.0f}) with "
                     f"{row['bytes_first_paint'] / 1e3:6.1f} KB" if packed else ""),
                  flush=True)
            print("        by part (MB): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in
                                                      report.bytes_by_part.items()), flush=True)
            if not args.keep:
                shutil.rmtree(out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
