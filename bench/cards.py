"""What link cards (`--site-url`) cost: CPU per latent and bytes, on a real store.

Build the demo store once (`feature-browser build --store /tmp/demo_store --out /tmp/demo_site
--quiet`), then:

    .venv/bin/python bench/cards.py --store /tmp/demo_store

Prints (1) the cards alone: every latent's card context and PNG in one pass in one process, as
one page worker draws them (CPU time, so that other load on the machine counts less), and (2) the
whole render in one worker without and with a site URL: CPU per latent and the bytes of each part
of the site.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from generator.site import cards
from generator.site.builder import PageBuilder
from generator.site.render import render_site
from generator.store.io import read_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("store"))
    args = parser.parse_args()
    data = read_store(args.store)
    n = data.latents.d_sae

    builder = PageBuilder(data, {})
    pages = [builder.latent_page(i) for i in range(n)]
    start = time.process_time()
    sizes = [len(cards.card_png(builder.card(i, pages[i], f"example.org/features/{i}.html")))
             for i in range(n)]
    cpu = time.process_time() - start
    print(f"cards alone: {cpu / n * 1e3:.2f} ms CPU per latent over {n} latents, "
          f"{sum(sizes) / n / 1e3:.1f} KB per card ({sum(sizes) / 1e6:.1f} MB)")

    with tempfile.TemporaryDirectory() as tmp:
        for url in (None, "https://example.org/sae/"):
            start = time.process_time()
            report = render_site(data, Path(tmp) / ("url" if url else "plain"), quiet=True,
                                 workers=1, site_url=url)
            cpu = time.process_time() - start
            print(f"render, 1 worker, {'with' if url else 'without'} --site-url: "
                  f"{cpu / n * 1e3:.2f} ms CPU per latent, {report.total_bytes / 1e6:.2f} MB: "
                  + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in report.bytes_by_part.items()
                              if v))


if __name__ == "__main__":
    main()
