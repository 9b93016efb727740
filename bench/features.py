"""What each of the site's views costs to render and ship, from one store (the demo's by default).

Renders the whole site once with a site URL (so link cards are included) and reports its bytes
by part, then times, on the same writer, each feature's render step on its own: the prompt view,
the corpus view, the token index, the latent map's files and the link cards (a sample of
latents, scaled to all), with the whole render for scale. Medians of --repeat runs, and each
step's share of the whole render's median, side by side. The compute stages' times are in the
build's own log (`feature-browser build` prints them per stage).

    .venv/bin/feature-browser build --store /tmp/demo-store --out /tmp/demo-site
    .venv/bin/python bench/features.py --store /tmp/demo-store
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from generator.site.cards import card_png
from generator.site.contexts import DEFAULT_SHOWING, TABLE_PAGE
from generator.site.render import render_site
from generator.site.search import SHARD_TARGET_BYTES
from generator.site.views import PromptPages, corpus_pages
from generator.site.writer import SiteWriter
from generator.store.io import read_store

SITE_URL = "https://example.github.io/demo/"
CARD_SAMPLE = 64


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def folder_bytes(path: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = read_store(args.store)
    d_sae = data.latents.d_sae
    work = Path(tempfile.mkdtemp(prefix="fb-features-"))
    try:
        whole = median_seconds(lambda: render_site(data, work / "site", quiet=True, workers=1,
                                                   site_url=SITE_URL), args.repeat)
        site = work / "site"
        total = folder_bytes(site)
        writer = SiteWriter(data, work / "steps", {}, True, TABLE_PAGE, SHARD_TARGET_BYTES,
                            workers=1, showing=DEFAULT_SHOWING, site_url=SITE_URL)
        writer.setup()
        pages = writer.pages
        steps: dict[str, tuple[float, int]] = {}
        if data.prompts is not None:
            view = PromptPages(data, pages.short_label, pages.text)
            steps["prompt view"] = (median_seconds(lambda: writer.write_view(view), args.repeat),
                                    folder_bytes(site / "prompts"))
        if data.corpus is not None:
            steps["corpus view"] = (median_seconds(lambda: writer.write_view(corpus_pages(
                data, pages.shown, pages.short_label, pages.text)), args.repeat),
                folder_bytes(site / "corpus"))
        if data.token_latents is not None:
            steps["token index"] = (median_seconds(writer.write_token_index, args.repeat),
                                    folder_bytes(site / "search", "t*.js"))
        if pages.map is not None:
            latent_map = pages.map
            steps["map files"] = (median_seconds(lambda: latent_map.write(writer.out), args.repeat),
                                  folder_bytes(site / "map"))
        sample = list(range(0, d_sae, max(1, d_sae // CARD_SAMPLE)))[:CARD_SAMPLE]

        contexts = [(i, pages.latent_page(i)) for i in sample]

        def cards() -> None:
            for i, page in contexts:
                card_png(pages.card(i, page, "example.github.io/demo"))
        per_card = median_seconds(cards, args.repeat) / len(sample)
        steps["link cards"] = (per_card * d_sae, folder_bytes(site / "cards"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"store {args.store}: {d_sae:,} latents, {len(data.seq_ids):,} kept sequences")
    print(f"whole render (1 worker, with --site-url): median {whole:.1f} s of {args.repeat}; "
          f"site {total / 1e6:.1f} MB")
    print(f"{'feature':<14} {'render s':>9} {'of render':>10} {'MB':>8} {'of site':>8}")
    for name, (seconds, size) in steps.items():
        print(f"{name:<14} {seconds:9.2f} {seconds / whole:10.1%} {size / 1e6:8.2f} "
              f"{size / total:8.1%}")
    print(f"link cards: {per_card * 1e3:.1f} ms a latent (median over {len(sample)} latents)")


if __name__ == "__main__":
    main()
