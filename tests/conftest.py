"""Shared fixtures for the render and browser tests: rendered fake sites (session-scoped, so each
is rendered once), a local http.server exposing a site under the sub-path /repo/, and one
headless Chromium for the whole session."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.site.render import RenderReport, render_site
from tests.fake_store import EXPLANATIONS, make_store

CHROMIUM = Path("/usr/lib/chromium/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def site_report(tmp_path_factory: pytest.TempPathFactory) -> RenderReport:
    """The full fake store (all optional fields) rendered with explanations, under root/repo/."""
    out = tmp_path_factory.mktemp("served") / "repo"
    return render_site(make_store(), out, EXPLANATIONS, quiet=True)


@pytest.fixture(scope="session")
def site(site_report: RenderReport) -> Path:
    return site_report.out


@pytest.fixture(scope="session")
def bare_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake store without any optional field, and no explanations."""
    out = tmp_path_factory.mktemp("bare") / "site"
    return render_site(make_store(optional=False), out, quiet=True).out


@pytest.fixture(scope="session")
def http_root(site: Path) -> Iterator[str]:
    """`site`'s parent served on 127.0.0.1 (random port): the site is at <url>/repo/."""
    from generator.site.serve import make_server

    server = make_server(site.parent, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                              headless=True)
        yield chromium
        chromium.close()
