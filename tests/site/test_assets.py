"""generator.site.assets: content-hashed static files and the relative-link helper."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from generator.site.assets import relative_url


def test_static_files_are_content_hashed(site: Path) -> None:
    names = sorted(p.name for p in (site / "static").iterdir())
    assert any(re.fullmatch(r"app\.[0-9a-f]{10}\.js", n) for n in names), names
    assert any(re.fullmatch(r"style\.[0-9a-f]{10}\.css", n) for n in names), names
    for path in (site / "static").iterdir():
        digest = path.name.split(".")[-2]
        assert hashlib.sha256(path.read_bytes()).hexdigest().startswith(digest)


def test_relative_url_helper() -> None:
    assert relative_url("index.html", "index.html") == "index.html"
    assert relative_url("index.html", "features/3.html") == "../index.html"
    assert relative_url("features/4.html", "features/3.html") == "4.html"
    assert relative_url("embed/3.html", "features/3.html") == "../embed/3.html"
    assert relative_url("features/3.html#ex-2", "index.html") == "features/3.html#ex-2"
    assert relative_url("#top", "features/3.html") == "#top"
