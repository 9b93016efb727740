"""generator.site.cards and --site-url: absolute links, one 1200 x 630 card per latent, hostile
text drawn, the URL checked, the same cards from parallel workers."""

from __future__ import annotations

import dataclasses
import re
from html import unescape as html_unescape
from pathlib import Path

import pytest

from generator.errors import UserError
from generator.site.render import render_site
from tests.fake_store import EXPLANATIONS, make_store
from tests.sitefiles import D_SAE, SITE_URL, Page, html_files


def test_site_url_pages_carry_absolute_links_and_a_card(linked_site: Path) -> None:
    root = SITE_URL + "/"
    for i in range(D_SAE):
        page = Page(linked_site / "features" / f"{i}.html")
        url = f"{root}features/{i}.html"
        assert page.find("link", rel="canonical")[0]["href"] == url
        assert page.meta("og:url") == url
        title = "".join(re.findall(r"<title>(.*?)</title>", page.raw, re.S)[:1])
        assert page.meta("og:title") == html_unescape(title)
        assert page.meta("og:description") == page.meta("description")
        assert page.meta("og:image") == page.meta("twitter:image") == f"{root}cards/{i}.png"
        assert (page.meta("og:image:width"), page.meta("og:image:height")) == ("1200", "630")
        assert page.meta("twitter:card") == "summary_large_image"
        absolute = [v for _, a in page.tags for v in a.values() if re.match(r"https?:", v)]
        assert absolute and all(v.startswith(root) for v in absolute), absolute
    # the hostile explanation reaches the tags as text, escaped
    page = Page(linked_site / "features" / "1.html")
    assert EXPLANATIONS[1] in page.meta("og:title") + page.meta("og:image:alt")
    assert "<img" not in re.sub(r'content="[^"]*"', "", page.raw.split("<body")[0])
    index = Page(linked_site / "index.html")
    assert index.find("link", rel="canonical")[0]["href"] == root
    assert index.meta("og:url") == root and index.meta("twitter:card") == "summary"
    assert "og:image" not in index.raw


def test_without_site_url_nothing_absolute_is_written(site: Path) -> None:
    assert not (site / "cards").exists()
    for path in html_files(site):
        page = Page(path)
        absolute = [v for _, a in page.tags for v in a.values() if re.search(r"https?:", v)]
        assert not absolute, (path, absolute)
        assert not page.find("link", rel="canonical")
        assert "og:url" not in page.raw and "og:image" not in page.raw


def test_link_cards_are_1200_by_630_pngs_one_per_latent(linked_site: Path) -> None:
    from PIL import Image

    pixels = {}
    for i in range(D_SAE):  # the dead latent too
        path = linked_site / "cards" / f"{i}.png"
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(path) as image:
            assert image.size == (1200, 630) and image.format == "PNG"
            pixels[i] = image.convert("RGB").tobytes()
    assert len(set(pixels.values())) == D_SAE  # every card differs from every other
    assert sorted(p.name for p in (linked_site / "cards").iterdir()) == sorted(
        f"{i}.png" for i in range(D_SAE))


def test_link_cards_draw_hostile_text() -> None:
    """Token strings and explanations are drawn as text: markup, NUL, RTL overrides, lone
    surrogates, emoji, CJK, newlines and very long words neither crash nor hide anything."""
    from PIL import Image

    from generator.site.cards import Card, card_png, one_line, safe_text

    hostile = ("</script><img src=x onerror=alert(1)>", "\x00\u202eevil\u200d", "\ud800",
               "😀中文", "line\nbreak\ttab", "w" * 400, "", "\U0010ffff")
    card = Card(id=7, label=" ".join(hostile), context="\u202e" + "sae " * 80, stats="\x00",
                hist=[0, 3, 0, 1], alphas=[0.1, 0.4, 0.6, 0.88], hist_labels=hostile[1:3],
                tokens_title=hostile[0],
                tokens=[(("", "·", t), "1,234") for t in hostile] + [((t,), t) for t in hostile],
                footer="\n".join(hostile))
    with Image.open(__import__("io").BytesIO(card_png(card))) as image:
        assert image.size == (1200, 630)
    dead = dataclasses.replace(card, hist=[], alphas=[], dead_note="never \x00 fired", tokens=[])
    assert card_png(dead) != card_png(card)
    assert safe_text("a\x00b\u202ec\ud800") == "a\\x00b\\u202ec\\ud800"
    assert one_line(" a \n\t b ") == "a b"


def test_site_url_is_checked_and_normalised(tmp_path: Path) -> None:
    from generator.cli import main
    from generator.config import check_site_url

    assert check_site_url("https://u.github.io/repo") == "https://u.github.io/repo/"
    assert check_site_url("http://localhost:8000/") == "http://localhost:8000/"
    for bad in ("u.github.io/repo", "/repo/", "ftp://x.org/", "https://x.org/?a=1",
                "https://x.org/#top", 'https://x.org/"><script>', "https://x.org/a b"):
        with pytest.raises(UserError, match="--site-url"):
            check_site_url(bad)
        with pytest.raises(UserError, match="--site-url"):
            render_site(make_store(), tmp_path / "s", quiet=True, site_url=bad)
    assert not (tmp_path / "s").exists()
    # the CLI refuses it before reading the store (which does not exist here)
    assert main(["render", "--store", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                 "--site-url", "ftp://x.org/"]) == 2


def test_cards_render_the_same_in_parallel(tmp_path: Path) -> None:
    data = make_store()
    one = render_site(data, tmp_path / "one", quiet=True, workers=1, site_url=SITE_URL).out
    two = render_site(data, tmp_path / "two", quiet=True, workers=2, chunk=5,
                      site_url=SITE_URL).out
    for i in range(D_SAE):
        assert (one / "cards" / f"{i}.png").read_bytes() == (two / "cards" / f"{i}.png").read_bytes()
        assert ((one / "features" / f"{i}.html").read_bytes()
                == (two / "features" / f"{i}.html").read_bytes())
