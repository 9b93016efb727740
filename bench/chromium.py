"""A built site's index page in headless Chromium from file://, for the site benchmarks
(bench/site_scale.py, bench/quality_table.py): Debian's Chromium through playwright."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHROMIUM = "/usr/lib/chromium/chromium"


@contextmanager
def open_index(site: Path, url: str | None = None) -> Iterator[tuple[Any, list[str]]]:
    """(the loaded index page, every URL it has loaded so far: the list grows as it runs);
    from `url` (the site served over HTTP) instead of file:// when given."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_context().new_page()
            loaded: list[str] = []
            # what has arrived (a request still in flight when a result shows did not delay it)
            page.on("requestfinished", lambda r: loaded.append(r.url))
            page.goto(url + "index.html" if url else (site / "index.html").resolve().as_uri())
            page.wait_for_load_state("load")
            yield page, loaded
        finally:
            browser.close()


def file_bytes(urls: Iterable[str], site: Path | None = None, url: str | None = None) -> int:
    """Bytes on disk of the file:// URLs among `urls`, or of those under `url` (the site at
    `site` served over HTTP)."""
    if url is not None and site is not None:
        paths = {u.split("#")[0].split("?")[0][len(url):] for u in urls if u.startswith(url)}
        return sum((site / path).stat().st_size for path in paths if path)
    return sum(Path(unquote(urlsplit(u).path)).stat().st_size for u in urls
               if u.startswith("file:"))
