"""Reading a rendered site in tests: the tags and text of an HTML page, the example codes of a
latent page, the data files (table, search and token index shards) that the browser loads."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from generator.site import codec
from generator.site.search import shard_of

D_SAE = 12


DEAD = 11


SITE_URL = "https://example.org/sae"
"""the public address the link-card tests render with."""
URL_ATTRS = {"href", "src", "action", "data-src"}


class Page(HTMLParser):
    """Tags (name, attrs) and text of one HTML file, for structural assertions."""

    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.raw = path.read_text(encoding="utf-8")
        self.feed(self.raw)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if "id" in a}

    def meta(self, key: str) -> str:
        for _, a in self.tags:
            if a.get("name") == key or a.get("property") == key:
                return a.get("content", "")
        raise AssertionError(f"no meta {key} in {self.path}")

    def urls(self) -> list[str]:
        return [a[k] for _, a in self.tags for k in URL_ATTRS if k in a]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def html_files(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def examples_in(page: Page) -> list[tuple]:
    """The decoded example codes of a page's data blob (see generator.site.codec)."""
    blob = json.loads(re.search(r"id=fb-data>(.*?)</script>", page.raw, re.S).group(1))
    assert isinstance(blob["e"], str) and isinstance(blob["m"], float | int)
    return [codec.decode_example(code) for code in blob["e"].split(" ") if code]


def load_script_call(path: Path, function: str) -> list:
    raw = path.read_text(encoding="utf-8").strip()
    assert raw.startswith(function + "(") and raw.endswith(");")
    return json.loads("[" + raw[len(function) + 1:-2] + "]")


def table_manifest(site: Path) -> dict:
    return json.loads(re.search(r"id=fb-table>(.*?)</script>", (site / "index.html").read_text(),
                                re.S).group(1))


def table_order(site: Path, key: str) -> list[list]:
    """Every row of the table files of one sort key, in file order."""
    manifest = table_manifest(site)
    rows: list[list] = []
    files = sorted((site / "search" / key).glob("[0-9]*.js"), key=lambda p: int(p.stem))
    assert [p.stem for p in files] == [str(c) for c in range(len(files))]
    for path in files:
        got_key, c, chunk = load_script_call(path, "fbRows")
        assert (got_key, c) == (key, int(path.stem))
        assert 0 < len(chunk) <= manifest["rows"]
        rows += chunk
    return rows


def sharded(site: Path, prefix: str, function: str) -> tuple[int, dict]:
    """search/<prefix><k>.js merged, checking that every key sits in the shard shard_of says."""
    shards = sorted((site / "search").glob(f"{prefix}[0-9]*.js"))
    merged: dict = {}
    for path in shards:
        k, keys = load_script_call(path, function)
        assert path.name == f"{prefix}{k}.js"
        for key in keys:
            assert shard_of(key, len(shards)) == k
        merged.update(keys)
    return len(shards), merged


def search_index(site: Path) -> tuple[int, dict[str, list[int]]]:
    return sharded(site, "s", "fbIndex")


def token_index(site: Path) -> tuple[int, dict[str, dict]]:
    return sharded(site, "t", "fbTokens")


def shown_codes(site: Path, i: int) -> list[tuple]:
    return examples_in(Page(site / "features" / f"{i}.html"))
