"""Screenshots of a built site for docs/: a latent page (light and dark), the index, an embed,
the corpus view (opened from an example of the latent) and a search by a corpus token.

    .venv/bin/python scripts/screenshots.py [--site site] [--latent 864] [--token self]
        [--out docs/screenshots]

Uses Debian's Chromium through playwright (installed by `scripts/install.sh --test`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/lib/chromium/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("site"))
    parser.add_argument("--latent", type=int, default=864)
    parser.add_argument("--token", default="self", help="the corpus token searched for")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    site, out = args.site.resolve(), args.out
    out.mkdir(parents=True, exist_ok=True)
    shots = [
        ("demo-feature-light.png", f"features/{args.latent}.html", "light", (1100, 1500)),
        ("demo-feature-dark.png", f"features/{args.latent}.html", "dark", (1100, 1500)),
        ("demo-index.png", "index.html", "light", (1200, 1100)),
        ("demo-embed.png", f"embed/{args.latent}.html", "light", (560, 480)),
        ("demo-phone.png", f"features/{args.latent}.html", "dark", (390, 844)),
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for name, page_path, scheme, (width, height) in shots:
            page = browser.new_page(viewport={"width": width, "height": height},
                                    color_scheme=scheme)
            page.goto((site / page_path).as_uri())
            page.screenshot(path=str(out / name))
            page.close()
            print(out / name)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((site / f"features/{args.latent}.html").as_uri())
        page.click("#ex-0 em")  # expand the top example, then its prompt-view link
        page.click("#ex-0 a.pvl")
        page.wait_for_selector("#ptok h3")
        page.hover("#pl tbody tr >> nth=0")  # colour the tokens by the sequence's top latent
        page.mouse.move(1100, 880)
        page.screenshot(path=str(out / "demo-corpus.png"))
        print(out / "demo-corpus.png")
        page.goto((site / "index.html").as_uri())
        page.fill("#q", args.token)
        page.wait_for_selector("#qr li.qh")
        page.screenshot(path=str(out / "demo-token-search.png"))
        print(out / "demo-token-search.png")
        page.close()
        browser.close()


if __name__ == "__main__":
    main()
