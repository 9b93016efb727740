"""Sites shared by the site tests: the fake store at default settings rendered both ways, and
the full fake store rendered with a site URL (link cards)."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.site.render import render_site
from tests.fake_store import EXPLANATIONS, make_scaled_store, make_store
from tests.sitefiles import SITE_URL


@pytest.fixture(scope="session")
def scaled_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A default-settings store (k=20, 10 intervals x 5 samples) rendered both ways."""
    data = make_scaled_store(d_sae=8, n_seqs=400)
    root = tmp_path_factory.mktemp("showing")
    return {mode: render_site(data, root / mode, quiet=True, compact=mode == "compact").out
            for mode in ("default", "compact")}


@pytest.fixture(scope="session")
def linked_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full fake store (hostile vocabulary and explanations) rendered with a site URL."""
    out = tmp_path_factory.mktemp("linked") / "site"
    return render_site(make_store(), out, EXPLANATIONS, quiet=True, site_url=SITE_URL).out
