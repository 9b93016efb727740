"""The packed site (generator/site/packed.py) in a real Chromium over HTTP from a sub-path, as
GitHub Pages serves it: every section of every latent equals the page-per-latent site's page of
the same store, hostile tokens stay text, the examples' tooltips, expansion and keyboard work,
the index table and search link to the viewer, and a damaged shard or file:// gets a one-line
message; no console error and no request outside the site."""

from __future__ import annotations

import logging
import posixpath
import re
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from generator.site import render as render_mod
from generator.site import search as search_mod
from generator.site.packed import read_shard, shard_size
from generator.site.render import render_site, wants_packed
from tests.fake_store import EXPLANATIONS, make_store
from tests.site.test_browser import Session, open_session

SECTIONS = ["nav.pn", "h1", ".expl", ".stats", "#quality", "#dead", "#acts", "#logits", "#legend",
            "#top", "#intervals", "#ablation", "#toptokens", "#neighbours", "#mapnb"]
SECTION_TEXT = """sels => sels.map(s => { const e = document.querySelector('article ' + s);
                                         return e ? e.innerText : null; })"""
TOKENS = """() => Array.from(document.querySelectorAll('.exs > li')).map(li => [li.id,
    Array.from(li.querySelectorAll(':scope > i')).map(i => i.className + '/' + i.textContent),
    li.textContent])"""
CHARTS = """() => Array.from(document.querySelectorAll('article svg.chart')).map(s =>
    s.outerHTML.replaceAll('\\n', ''))"""
LINKS = """() => Array.from(document.querySelectorAll('article a')).map(a => a.getAttribute('href'))"""


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The hostile fake store as a packed site (root/repo/) and as pages (root/pages/, no corpus
    view: the packed site has none), both served on 127.0.0.1; the packed table split as a
    million-latent one is (3 rows a file, 5 ids an order file, 2 head rows)."""
    from generator.site.serve import make_server

    root = tmp_path_factory.mktemp("packed")
    data = make_store()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search_mod, "PACKED_TABLE", {"file": 3, "order": 5, "head": 2})
        render_site(data, root / "repo", EXPLANATIONS, quiet=True, packed=True, table_rows=5)
    render_site(data, root / "pages", EXPLANATIONS, quiet=True, packed=False, corpus_view=False)
    server = make_server(root, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"root": root, "url": f"http://127.0.0.1:{server.server_address[1]}", "data": data}
    server.shutdown()
    server.server_close()


@pytest.fixture
def packed(browser: object, sites: dict) -> Iterator[Session]:
    base = sites["url"] + "/repo/"
    with open_session(browser, base) as s:
        yield s
    # the comparison test opens the page-per-latent site too
    outside = [u for u in s.requests if not u.startswith((base, sites["url"] + "/pages/"))]
    assert not outside, f"requests left the site: {outside}"


def show(s: Session, i: int) -> object:
    """latent.html#i, drawn."""
    page = s.open(f"latent.html#{i}")
    page.wait_for_function(f"window.fbShown === {i}")
    return page


def test_every_section_of_every_latent_equals_its_page(packed: Session, sites: dict) -> None:
    """Same store, both formats: every section's text, every window token (classes and text),
    both charts (bars, labels, bins) and every link target the same, for all 12 latents (the
    dead one and the hostile vocabulary included)."""
    assert_same_latents(packed.page, sites["url"] + "/pages/", packed.base,
                        range(sites["data"].latents.d_sae))


def assert_same_latents(page: object, pages: str, packed: str, ids: Iterable[int]) -> None:
    """Latents `ids` read the same on the page-per-latent site at `pages` and in the viewer of
    the packed site at `packed` (both URLs of a site root)."""
    for i in ids:
        page.goto(pages + f"features/{i}.html")
        page.wait_for_load_state("load")
        want = [page.evaluate(SECTION_TEXT, SECTIONS), page.evaluate(TOKENS),
                page.evaluate(CHARTS), page.evaluate(LINKS)]
        page.goto(packed + f"latent.html#{i}")
        page.wait_for_function(f"window.fbShown === {i}")
        got = [page.evaluate(SECTION_TEXT, SECTIONS), page.evaluate(TOKENS),
               page.evaluate(CHARTS), page.evaluate(LINKS)]
        assert got[:3] == want[:3], i
        # links: the same latents and places (a page's features/<j>.html is latent.html#<j>)
        assert [canonical(h) for h in got[3]] == [canonical(h, "features") for h in want[3]], i
        assert page.title().startswith(f"Latent {i}")


def canonical(href: str, folder: str = "") -> str:
    """A link from a page in `folder` (or the viewer at the root), relative to the site root,
    latents as #<id>."""
    path, hash_, anchor = href.partition("#")
    path = posixpath.normpath(posixpath.join(folder, path)) if path else ""
    link = path + hash_ + anchor
    return re.sub(r"^(features/(\d+)\.html|latent\.html#(\d+))$",
                  lambda m: "#" + (m.group(2) or m.group(3)), link)


def test_hostile_tokens_and_explanations_stay_text(packed: Session) -> None:
    for i in (0, 3, 7):
        page = show(packed, i)
        assert page.evaluate("document.querySelectorAll('article script, article img:not("
                             "[src*=overview]), article iframe').length") == 0
        assert not page.evaluate("window.pwned || false")


def test_tooltips_expansion_and_keyboard(packed: Session) -> None:
    page = show(packed, 2)
    page.hover("#ex-0 i.m")
    assert "100% of max" in page.text_content("#tip")
    before = page.eval_on_selector("#ex-0", "li => li.querySelectorAll(':scope > i').length")
    page.focus("#ex-0")
    page.keyboard.press("ArrowRight")
    assert page.is_visible("#tip")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ex-0.full")
    assert page.eval_on_selector("#ex-0", "li => li.querySelectorAll(':scope > i').length") == 16
    assert before < 16
    page.keyboard.press("Enter")
    page.wait_for_selector("#ex-0:not(.full)")


def test_next_link_and_hash_redraw_and_permalinks(packed: Session) -> None:
    page = show(packed, 4)
    page.click("a[rel=next]")
    page.wait_for_function("window.fbShown === 5")
    assert page.text_content("h1") == "Latent 5"
    page.click("[data-copy=link]")
    assert page.evaluate("window.fbLastCopy") == packed.base + "latent.html#5"
    page.click("[data-copy=embed]")
    assert page.evaluate("window.fbLastCopy").startswith(
        '<iframe src="' + packed.base + "latent.html?embed#5")
    page.go_back()
    page.wait_for_function("window.fbShown === 4")


def test_a_first_paint_asks_for_its_shard_once(browser: object, sites: dict) -> None:
    """latent.html's head asks for the latent's shard and the symbol table while the scripts
    load; the viewer takes those answers instead of asking again."""
    base = sites["url"] + "/repo/"
    k = 7 // shard_size(12)
    with open_session(browser, base) as s:
        show(s, 7)
        asked = [u[len(base):] for u in s.requests if u.endswith(".bin")]
    assert sorted(asked) == sorted([f"data/{k}.bin", "seqs/t.bin"])


def test_card_mode_and_phone_width(packed: Session) -> None:
    page = packed.page
    page.goto(packed.base + "latent.html?embed#2")
    page.wait_for_function("window.fbShown === 2")
    assert page.evaluate("document.body.classList.contains('card')")
    assert page.get_attribute(".more a", "href").endswith("latent.html#2")
    page.set_viewport_size({"width": 375, "height": 700})
    show(packed, 1)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_damaged_shard_and_unknown_latent_say_so(browser: object, sites: dict,
                                                  tmp_path: Path) -> None:
    copy = sites["root"] / "damaged"
    shutil.copytree(sites["root"] / "repo", copy)
    (copy / "data" / "0.bin").write_bytes(b"not a shard")
    context = browser.new_context()
    page = context.new_page()
    page.goto(sites["url"] + "/damaged/latent.html#3")
    page.wait_for_function("!/Loading/.test(document.getElementById('vmsg').textContent)")
    text = page.text_content("#vmsg")
    assert text.startswith("Cannot show latent 3:") and "render it again" in text
    page.goto(sites["url"] + "/repo/latent.html#99")
    page.wait_for_function("!/Loading/.test(document.getElementById('vmsg').textContent)")
    assert "No latent “99”" in page.text_content("#vmsg")
    page.goto((sites["root"] / "repo" / "latent.html").resolve().as_uri() + "#3")
    page.wait_for_function("!/Loading/.test(document.getElementById('vmsg').textContent)")
    assert "feature-browser serve" in page.text_content("#vmsg")
    context.close()


def test_table_sorts_and_pages_through_every_latent(packed: Session, sites: dict) -> None:
    """The packed table's rows come from the head file, or through the order files from the id
    files; sorted by density both ways, every page shows the rows it should, in order."""
    page = packed.open("index.html")
    lat, meta = sites["data"].latents, sites["data"].meta
    density = [float(f"{x / meta.n_tokens:.3g}") for x in lat.n_active]
    descending = sorted(range(lat.d_sae), key=lambda i: (-density[i], i))
    for direction, order in (("descending", descending), ("ascending", descending[::-1])):
        page.click("[data-sort=d]")
        for p in range(3):
            want = order[5 * p:5 * (p + 1)]
            page.wait_for_function(
                "want => JSON.stringify(Array.from(document.querySelectorAll("
                "'#lt tbody tr td:first-child a')).map(a => +a.textContent)) === "
                "JSON.stringify(want)", arg=want)
            links = page.eval_on_selector_all("#lt tbody a", "els => els.map(e => e.href)")
            assert links == [packed.base + f"latent.html#{i}" for i in want]
            if p < 2:
                page.click("[data-page='1']")
        assert page.get_attribute("#lt th:nth-child(2)", "aria-sort") == direction


def test_search_results_open_the_viewer(packed: Session) -> None:
    page = packed.open("index.html")
    page.fill("#q", "5")
    page.wait_for_function("document.querySelectorAll('#qr li').length > 0")
    # results first, labels as the id files arrive: latent 5's is its explanation
    page.wait_for_function("document.querySelector('#qr li .note').textContent !== ''")
    assert page.text_content("#qr li .note") == EXPLANATIONS[5]
    page.click("#qr li a >> nth=0")
    page.wait_for_function("window.fbShown === 5")


def test_shards_hold_one_record_per_latent(sites: dict) -> None:
    site = sites["root"] / "repo"
    n = sites["data"].latents.d_sae
    records = [r for f in sorted((site / "data").glob("*.bin"), key=lambda p: int(p.stem))
               for r in read_shard(f.read_bytes())]
    assert len(records) == n and shard_size(n) == 64
    assert [bool(r.get("dead")) for r in records] == [bool(x == 0)
                                                       for x in sites["data"].latents.n_active]
    assert not (site / "features").exists() and not (site / "embed").exists()


def test_the_packed_site_is_chosen_by_width(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    assert not wants_packed(65_536, False) and wants_packed(66_667, False)
    assert not wants_packed(131_072, True) and wants_packed(131_579, True)
    monkeypatch.setattr(render_mod, "PAGE_BYTES", {False: 10**9, True: 10**9})
    caplog.set_level(logging.INFO, logger="generator.site.render")
    render_site(make_store(), tmp_path / "auto", quiet=True)
    assert (tmp_path / "auto" / "latent.html").is_file()
    assert any("writing the packed site" in r.getMessage() for r in caplog.records)


def test_render_command_writes_either_format_into_the_same_folder(tmp_path: Path) -> None:
    from generator.cli import main
    from generator.store.io import write_store

    write_store(make_store(), tmp_path / "store")
    args = ["render", "--quiet", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "site")]
    assert main([*args, "--packed"]) == 0
    assert (tmp_path / "site" / "latent.html").is_file()
    assert not (tmp_path / "site" / "features").exists()
    assert main([*args, "--no-packed"]) == 0
    assert (tmp_path / "site" / "features" / "0.html").is_file()
    assert not (tmp_path / "site" / "latent.html").exists()
    assert not (tmp_path / "site" / "data").exists()
