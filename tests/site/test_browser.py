"""The site in a real Chromium, from file:// and from http://127.0.0.1:<port>/repo/ (a GitHub
Pages-like sub-path): search, navigation, tooltips, expansion, embed, table, dark mode; no console
error and no request leaving the site."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from generator.site import builder, codec
from generator.site.assets import resource_dir
from generator.site.charts import activation_chart, logit_chart, round3, sig
from tests.fake_store import EXPLANATIONS, make_store

pytestmark = pytest.mark.browser
MODES = ["file", pytest.param("http", marks=pytest.mark.slow)]
"""the origins every session test runs from: file:// in the fast tier, and the HTTP sub-path (as
on GitHub Pages) in the full suite too."""


@dataclass
class Session:
    """One page plus what it did: every request URL and every console error."""

    page: object
    base: str
    requests: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    """URLs outside the site that a test itself opened (a host page for the iframe)."""
    errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> object:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")
        return self.page


@contextmanager
def open_session(browser: object, base: str) -> Iterator[Session]:
    """A fresh browser context on `base` that records requests and console errors; on exit it
    closes and checks that no error was logged."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    s = Session(page, base)
    page.on("request", lambda r: s.requests.append(r.url))
    page.on("console", lambda m: s.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    yield s
    context.close()
    assert not s.errors, s.errors


@pytest.fixture(params=MODES)
def session(request: pytest.FixtureRequest, browser: object, site: Path) -> Iterator[Session]:
    if request.param == "file":
        base = site.resolve().as_uri() + "/"
    else:
        base = request.getfixturevalue("http_root") + "/repo/"
    with open_session(browser, base) as s:
        yield s
    outside = [u for u in s.requests if not u.startswith(base) and u not in s.allowed]
    assert not outside, f"requests left the site: {outside}"


def search(s: Session, query: str) -> list[str]:
    page = s.open("index.html")
    page.fill("#q", query)
    page.wait_for_function("document.querySelectorAll('#qr li').length > 0")
    return page.eval_on_selector_all("#qr li a", "els => els.map(e => e.textContent)")


def test_search_by_id_opens_the_page(session: Session) -> None:
    results = search(session, "3")
    assert results[0] == "#3"
    session.page.keyboard.press("Enter")
    session.page.wait_for_url("**/features/3.html")
    assert session.page.text_content("h1") == "Latent 3"


def test_search_by_explanation_and_click(session: Session) -> None:
    assert "#0" in search(session, "cats sitting")
    session.page.click("#qr li a >> text=#0")
    session.page.wait_for_url("**/features/0.html")


def test_search_by_prefix_and_top_token(session: Session) -> None:
    data = make_store()
    # the first latent whose top token holds a word (others' are hostile pieces, e.g. b"\xe2\x82")
    words = {latent: "".join(c for c in data.vocab[ids[0]].decode("utf-8", "ignore")
                             if c.isalnum())
             for latent, ids in enumerate(data.latents.top_token_ids) if ids[0] >= 0}
    latent = next(i for i, w in words.items() if w)
    assert f"#{latent}" in search(session, words[latent])
    assert "#5" in search(session, "pyth")  # prefix of an explanation word


def test_search_by_a_corpus_token(session: Session) -> None:
    """A query that is a corpus token lists the latents firing most on it first (with the mean
    activation, count and token), then the other matches; the keyboard skips the headings."""
    data = make_store()
    tl = data.token_latents
    assert tl is not None
    row = next(r for r, t in enumerate(tl.token.tolist()) if data.vocab[t] == b" self")
    page = session.open("index.html")
    page.fill("#q", "SELF ")  # case and surrounding spaces do not matter
    page.wait_for_selector("#qr li.qh")
    heads = page.eval_on_selector_all("#qr li.qh", "ls => ls.map(l => l.textContent)")
    assert heads[0] == "Fire most on the token \u201cself\u201d (mean activation there \u00d7 times):"
    items = page.eval_on_selector_all("#qr li[role=option]", "ls => ls.map(l => l.textContent)")
    first = [int(i) for i in tl.latent[row] if i >= 0]
    assert items[0].startswith(f"#{first[0]}") and "on \u201c self\u201d" in items[0]
    mean = float(tl.sum_act[row][0]) / int(tl.count[row][0])
    assert f"{float(f'{mean:.3g}'):g} \u00d7 {int(tl.count[row][0])}" in items[0]
    status = page.text_content("#qs")
    assert re.fullmatch(f"the {len(first)} latents that fire most on the token; "
                        r"\d+\+? other latents? match(es)?", status), status
    # the keyboard steps over the headings (the list starts with one): down selects the first
    # option, up from there wraps to the last
    selected = page.locator("#qr li[aria-selected=true]")
    for key, want in (("ArrowDown", items[0]), ("ArrowUp", items[-1]), ("ArrowDown", items[0])):
        page.keyboard.press(key)
        assert selected.count() == 1 and selected.get_attribute("role") == "option"
        assert page.get_attribute("#q", "aria-activedescendant") == selected.get_attribute("id")
        assert selected.text_content() == want
    latent = selected.locator("a").text_content()[1:]
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/features/{latent}.html")


def test_token_keys_are_stripped_as_the_browser_trims(session: Session) -> None:
    """search.JS_SPACE, which token_key strips, is exactly what String.prototype.trim removes."""
    from generator.site.search import JS_SPACE, token_key

    page = session.open("index.html")
    trimmed = page.evaluate("""() => { const out = [];
        for (let c = 0; c < 0x10000; c++) {
          const ch = String.fromCharCode(c);
          if ((ch + "x" + ch).trim() === "x") out.push(c);
        }
        return out; }""")
    assert sorted(trimmed) == sorted(map(ord, JS_SPACE))
    assert token_key("\ufeff Self\x85") == "self\x85"


def test_a_latent_id_stays_first_above_its_token(session: Session) -> None:
    """"1" is a latent id and a corpus token (" 1"): the latent comes first, Enter opens it."""
    page = session.open("index.html")
    page.fill("#q", "1")
    page.wait_for_selector("#qr li.qh")
    first = page.locator("#qr li").first
    assert first.get_attribute("role") == "option" and first.locator("a").text_content() == "#1"
    page.keyboard.press("Enter")
    page.wait_for_url("**/features/1.html")


def test_search_keyboard_navigation(session: Session) -> None:
    results = search(session, "cat")  # exact token " cat" and prefix of "cats"
    assert len(results) >= 2
    page = session.page
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.get_attribute("#q", "aria-activedescendant") == "qr-1"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/features/{results[1][1:]}.html")


def test_search_from_a_feature_page_form(session: Session) -> None:
    page = session.open("features/2.html")
    page.fill("form.sf input", "cats")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#qr li').length > 0")
    assert page.input_value("#q") == "cats"


def test_tooltip_on_hover_and_focus(session: Session) -> None:
    page = session.open("features/2.html")
    page.hover("#ex-0 i.m")
    assert page.is_visible("#tip")
    text = page.text_content("#tip")
    assert "activation" in text and "100% of max" in text and "loss" in text
    page.mouse.move(0, 0)
    page.focus("#ex-1")
    page.keyboard.press("ArrowRight")
    assert page.is_visible("#tip")
    bos = page.eval_on_selector("#ex-1 > i", "i => i.classList.contains('bos')")
    assert ("BOS" if bos else "position") in page.text_content("#tip")


def test_histogram_bars_have_tooltips_saying_what_they_count(session: Session) -> None:
    """Hovering bin k of each chart shows generator.site.charts.Bins.tip(k), made by charts.js from the
    chart's data attributes."""
    lat = make_store().latents
    i = 2
    charts = [activation_chart(lat.hist[i], lat.interval_counts[i], float(lat.max_act[i])),
              logit_chart(lat.logit_hist[i], float(lat.logit_lo[i]), float(lat.logit_hi[i]))]
    page = session.open(f"features/{i}.html")
    for n, chart in enumerate(charts):
        svg = page.locator("svg.chart").nth(n)
        box = svg.bounding_box()
        bins = len(chart.bins.counts)
        for k in (0, bins // 2, bins - 1):
            svg.hover(position={"x": (k + 0.5) * box["width"] / bins, "y": box["height"] / 2})
            assert page.is_visible("#tip")
            assert page.text_content("#tip") == chart.bins.tip(k)
    assert page.locator("svg.chart title").count() == 0  # no native tooltip over ours
    assert page.get_attribute("svg.chart >> nth=0", "aria-label").startswith("Tokens per")
    page.mouse.move(0, 0)
    assert not page.is_visible("#tip")
    index = session.open("index.html")
    svg = index.locator("svg.chart").first
    box = svg.bounding_box()
    svg.hover(position={"x": box["width"] - 2, "y": box["height"] / 2})
    assert re.fullmatch(r"[\d,]+ latents? with density in \[[^,]+, 1\]", index.text_content("#tip"))


def test_app_js_formats_numbers_as_python_sig(browser: object) -> None:
    """Chart tooltips format bin edges in the browser: util.js's sig() must write what
    generator.site.charts.sig writes."""
    source = (resource_dir("static") / "util.js").read_text()
    body = re.search(r"\n  (function sig\(x\) \{.*?\n  \})\n", source, re.S).group(1)
    values = [0.0, 1.0, 0.1, 0.31, 0.315, 2 / 3, 3.2459301948547363, -0.388, 12.5, 999.4, 999.6,
              1000.0, 1234.4, 65536.0, 999_999.0, 1e6, 1.5e7, 1e-4, 9.9996e-5, 1.234e-5, 4.5e-9,
              -2.5e-6, 0.00123, 123.0, 100.0, 0.05, 7e-3]
    context = browser.new_context()
    page = context.new_page()
    got = page.evaluate(f"(xs) => {{ {body}; return xs.map(sig); }}", values)
    context.close()
    assert got == [sig(x) for x in values]


def test_bos_markers_have_tooltips_in_the_window_and_when_expanded(session: Session) -> None:
    page = session.open("features/2.html")
    n = page.evaluate("[...document.querySelectorAll('.exs > li')].findIndex("
                      "li => li.querySelector('i.bos ~ i.m'))")
    assert n >= 0
    code = page.evaluate(
        f"JSON.parse(document.getElementById('fb-data').textContent).e.split(' ')[{n}]")
    seq, start, end, peak = codec.decode_example(code)[:4]
    data = make_store()
    tokens = data.seq_tokens[list(data.seq_ids).index(seq)]
    bos = [p for p, t in enumerate(tokens) if t == data.meta.bos_id]
    assert page.get_attribute(f"#ex-{n} i.bos", "title") is None  # #tip takes over from title
    page.hover(f"#ex-{n} i.bos >> nth=0")
    assert "⟨bos⟩" in page.text_content("#tip")
    assert "excluded from statistics" in page.text_content("#tip")
    page.hover(f"#ex-{n} i.m")  # positions of the window's tokens skip BOS markers
    assert f"position {peak}" in page.text_content("#tip")
    assert "100% of max" in page.text_content("#tip")
    page.click(f"#ex-{n} em")
    page.wait_for_selector(f"#ex-{n}.full")
    shown = page.eval_on_selector(f"#ex-{n}", "li => [...li.querySelectorAll(':scope > i')]"
                                  ".flatMap((e, k) => e.classList.contains('bos') ? [k] : [])")
    assert shown == bos
    assert page.eval_on_selector(f"#ex-{n} i.bos", "e => e.textContent") == "⟨bos⟩"
    page.hover(f"#ex-{n} i.bos >> nth=0")
    assert f"position {bos[0]}" in page.text_content("#tip")
    assert "excluded from statistics" in page.text_content("#tip")


def test_expand_shows_the_whole_sequence(session: Session) -> None:
    page = session.open("features/2.html")
    before = page.eval_on_selector("#ex-0", "li => li.querySelectorAll('i').length")
    page.click("#ex-0 em")
    page.wait_for_selector("#ex-0.full")
    ctx = make_store().meta.ctx
    assert page.eval_on_selector("#ex-0", "li => li.querySelectorAll(':scope > i').length") == ctx
    assert before < ctx
    assert page.eval_on_selector("#ex-0", "li => li.querySelectorAll('i.m').length") == 1
    page.hover("#ex-0 i >> nth=0")
    assert "position 0" in page.text_content("#tip")
    page.click("#ex-0 em")
    page.wait_for_selector("#ex-0:not(.full)")
    assert page.eval_on_selector("#ex-0", "li => li.querySelectorAll('i').length") == before


def test_expanded_tooltips_outside_the_window_give_the_colour_range(session: Session) -> None:
    page = session.open("features/2.html")
    codes = page.evaluate("JSON.parse(document.getElementById('fb-data').textContent).e")
    found = [(n, c) for n, c in enumerate(codes.split(" ")) if codec.decode_example(c)[6]]
    assert found, "no activation outside a window"
    n, code = found[0]
    pos, colour = next(iter(codec.decode_example(code)[6].items()))
    page.click(f"#ex-{n} em")
    page.wait_for_selector(f"#ex-{n}.full")
    token = f"#ex-{n} > i >> nth={pos}"
    assert page.get_attribute(token, "class").split()[0] == f"a{colour}"
    page.hover(token)
    tip = page.text_content("#tip")
    assert f"position {pos}" in tip and f"colour {colour} of 9" in tip, tip


def test_expanded_tokens_match_the_server_window(session: Session) -> None:
    """JS renders expanded tokens with the same classes Python gave the window's elements."""
    page = session.open("features/4.html")
    server = page.eval_on_selector_all("#ex-0 > i", "els => els.map(e => e.className)")
    page.keyboard.press("Tab")  # keyboard: focus ends up on a control; Enter expands examples
    page.focus("#ex-0")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ex-0.full")
    full = page.eval_on_selector_all("#ex-0 > i", "els => els.map(e => e.className)")
    assert [c for c in full if c and c != "bos"] == [c for c in server if c != "bos"]
    assert server.count("bos") <= full.count("bos")


def test_copy_embed_snippet_uses_an_absolute_url(session: Session) -> None:
    page = session.open("features/5.html")
    page.click("[data-copy=embed]")
    snippet = page.evaluate("window.fbLastCopy")
    assert snippet.startswith('<iframe src="' + session.base + "embed/5.html")
    page.click("[data-copy=link]")
    assert page.evaluate("window.fbLastCopy") == session.base + "features/5.html"


def test_embed_renders_inside_an_iframe(session: Session, site: Path) -> None:
    """embed/<id>.html (the URL blog posts iframe) opens the latent page's card mode."""
    host = site.parent / "host.html"
    host.write_text('<!doctype html><title>host</title><link rel=icon href="data:,">'
                    '<iframe id=f src="repo/embed/3.html" width=600 height=500></iframe>',
                    encoding="utf-8")
    host_url = session.base.rsplit("repo/", 1)[0] + "host.html"
    session.allowed.append(host_url)
    page = session.page
    page.goto(host_url)
    frame = page.frame_locator("#f")
    frame.locator("body.card").wait_for()
    url = page.frames[1].url
    assert url == session.base + "features/3.html?embed", url
    assert frame.locator("h1").text_content() == "Latent 3"
    assert frame.locator("#top .exs li:visible").count() == 3
    assert frame.locator("svg.chart:visible").count() >= 1
    assert frame.locator("header").is_hidden() and frame.locator("#neighbours").is_hidden()
    assert frame.locator("p.more a").get_attribute("target") == "_blank"
    frame.locator("#ex-0 i.m").hover()  # tooltips work in the card
    assert frame.locator("#tip").is_visible()


def test_embed_stub_redirects_without_javascript(browser: object, site: Path) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto((site / "embed" / "3.html").resolve().as_uri())
    page.wait_for_url("**/features/3.html?embed")
    assert page.text_content("h1") == "Latent 3"
    context.close()


def test_table_sorts_and_paginates(session: Session) -> None:
    page = session.open("index.html")
    page.click("[data-sort=d]")  # the sorted rows load from the table files
    data = make_store()
    densest = int(data.latents.n_active.argmax())
    first = "#lt tbody tr:first-child td:first-child"
    page.wait_for_function(f"document.querySelector('{first}').textContent === '{densest}'")
    assert page.get_attribute("#lt th:nth-child(2)", "aria-sort") == "descending"
    page.click("[data-sort=d]")
    page.wait_for_function(f"document.querySelector('{first}').textContent === '11'")
    # the dead latent has the lowest density
    assert page.get_attribute("#lt th:nth-child(2)", "aria-sort") == "ascending"


def test_dark_mode(session: Session, tmp_path: Path) -> None:
    session.page.emulate_media(color_scheme="dark")
    page = session.open("features/1.html")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    page.screenshot(path=str(tmp_path / "dark.png"), full_page=True)
    assert (tmp_path / "dark.png").stat().st_size > 1000
    session.page.emulate_media(color_scheme="light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"


def test_phone_width_has_no_horizontal_scroll(session: Session) -> None:
    session.page.set_viewport_size({"width": 375, "height": 700})
    page = session.open("features/1.html")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_readable_without_javascript(browser: object, site: Path) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto((site / "features" / "2.html").resolve().as_uri())
    assert page.locator(".exs li").count() > 0
    assert page.locator("svg.chart").count() == 2
    page.goto((site / "index.html").resolve().as_uri())
    assert page.locator("#lt tbody tr").count() == 12
    context.close()


# ---------------------------------------------------------------------------------------------
# a finely sharded site: the table and the term index as a 131k-latent site ships them


@pytest.fixture(scope="module")
def sharded_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake store with 5 table rows per file (3 pages) and ~64-byte search shards."""
    from generator.site.render import render_site

    out = tmp_path_factory.mktemp("sharded") / "site"
    return render_site(make_store(), out, EXPLANATIONS, quiet=True, table_rows=5,
                       shard_bytes=64).out


@pytest.fixture
def sharded(browser: object, sharded_site: Path) -> Iterator[Session]:
    with open_session(browser, sharded_site.resolve().as_uri() + "/") as s:
        yield s
    assert all(u.startswith(s.base) for u in s.requests), s.requests


def table_ids(page: object) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all(
        "#lt tbody tr td:first-child", "els => els.map(e => e.textContent)")]


def wait_page(page: object, n: int) -> None:
    page.wait_for_function(f"document.getElementById('pg').textContent.startsWith('page {n} ')")


def test_sharded_search_loads_only_what_it_needs(sharded: Session) -> None:
    page = sharded.open("index.html")
    assert not [u for u in sharded.requests if "/search/" in u]  # no table data up front
    page.fill("#q", "cats sitting")
    page.wait_for_function("document.querySelectorAll('#qr li').length > 0")
    results = page.eval_on_selector_all("#qr li", "els => els.map(e => e.textContent)")
    assert results[0] == "#0" + EXPLANATIONS[0]
    loaded = [u.rsplit("/search/", 1)[1] for u in sharded.requests if "/search/" in u]
    shards = int(page.get_attribute("#q", "data-shards"))
    assert shards > 2
    assert 0 < len([f for f in loaded if f.startswith("s")]) <= 2  # one shard per query term
    assert len([f for f in loaded if f.startswith("t")]) == 1  # the whole query's token shard
    assert all(f.startswith(("s", "t", "id/")) for f in loaded), loaded
    page.fill("#q", "10")
    page.wait_for_function("document.querySelector('#qr li a').textContent === '#10'")
    label = ", ".join(t for t in (builder.PageBuilder(make_store(), {}).top_token_labels(10, 3)))
    assert label and page.text_content("#qr li .note") == label  # from the last table file


def test_sharded_table_sorts_and_pages_through_every_latent(sharded: Session) -> None:
    data = make_store()
    page = sharded.open("index.html")
    assert table_ids(page) == [0, 1, 2, 3, 4]  # server-rendered
    page.click("[data-page='1']")
    wait_page(page, 2)
    assert table_ids(page) == [5, 6, 7, 8, 9]
    page.click("[data-sort=d]")
    wait_page(page, 1)
    shown: list[int] = []
    for n in (1, 2, 3):
        if n > 1:
            page.click("[data-page='1']")
            wait_page(page, n)
        page.wait_for_function("document.querySelectorAll('#lt tbody tr').length > 0")
        shown += table_ids(page)
    assert page.is_disabled("[data-page='1']")
    density = data.latents.n_active
    assert shown == sorted(range(12), key=lambda i: (-density[i], i))
    page.click("[data-sort=am]")  # descending first; NaN (no active shown position) last
    wait_page(page, 1)
    page.click("[data-sort=am]")  # ascending: the valid part backwards, NaN still last
    page.wait_for_function("document.querySelector('#lt th:nth-child(6)')"
                           ".getAttribute('aria-sort') === 'ascending'")
    abl = [round3(float(x)) if np.isfinite(x) else None for x in data.latents.abl_mean]
    valid = sorted((i for i in range(12) if abl[i] is not None), key=lambda i: (-abl[i], i))
    expected = valid[::-1] + [i for i in range(12) if abl[i] is None]
    assert len(valid) < 12  # the dead latent has no ablation mean
    shown = []
    for n in (1, 2, 3):
        if n > 1:
            page.click("[data-page='1']")
            wait_page(page, n)
        page.wait_for_function(f"document.querySelector('#lt tbody td a').textContent === "
                               f"'{expected[5 * (n - 1)]}'")
        shown += table_ids(page)
    assert shown == expected


def all_pages(page: object, n_pages: int, first_id: int | None = None) -> list[int]:
    """The ids of every table page from the first, clicking next."""
    shown: list[int] = []
    for n in range(1, n_pages + 1):
        if n > 1:
            page.click("[data-page='1']")
            wait_page(page, n)
        page.wait_for_function("document.querySelectorAll('#lt tbody tr').length > 0")
        shown += table_ids(page)
    return shown


def test_sharded_table_sorts_and_filters_by_quality(sharded: Session) -> None:
    """Sort by the share of activation at BOS, then filter by flags: the rows, their order and
    their badges are the store's; only the sort key's flags file and the needed row files load."""
    from generator.site.quality import AT_BOS, DENSE, latent_quality

    data = make_store()
    q = latent_quality(data.latents, data.meta.n_tokens)
    share = [round3(float(x)) for x in q.bos_share]
    page = sharded.open("index.html")
    assert page.is_visible("#lf")  # the filter needs the script: shown by it
    page.click("[data-sort=b]")
    page.wait_for_function("document.querySelector('#lt th button[data-sort=b]').parentNode"
                           ".getAttribute('aria-sort') === 'descending'")
    wait_page(page, 1)
    order = sorted(range(12), key=lambda i: (-share[i], i))
    page.wait_for_function(f"document.querySelector('#lt tbody td a').textContent === "
                           f"'{order[0]}'")
    assert all_pages(page, 3) == order
    assert not [u for u in sharded.requests if u.endswith("/q.js")]  # no filter, no flags
    # hide dense latents: what is left, in the same order, on one page
    page.select_option(f"select[data-flag='{DENSE}']", "hide")
    page.wait_for_function("document.getElementById('lfn').textContent !== ''")
    kept = [i for i in order if not q.flags[i] & DENSE]
    assert page.text_content("#lfn") == f"{len(kept)} of 12 latents pass the filter"
    wait_page(page, 1)
    page.wait_for_function(f"document.querySelectorAll('#lt tbody tr').length === {len(kept)}")
    assert table_ids(page) == kept and page.is_disabled("[data-page='1']")
    assert [u.rsplit("/search/", 1)[1] for u in sharded.requests if u.endswith("/q.js")] == \
        ["b/q.js"]
    # and only the latents mostly at BOS, ascending by that share
    page.select_option(f"select[data-flag='{DENSE}']", "")
    page.select_option(f"select[data-flag='{AT_BOS}']", "only")
    page.click("[data-sort=b]")
    bos = [i for i in reversed(order) if q.flags[i] & AT_BOS]
    page.wait_for_function(f"document.querySelectorAll('#lt tbody tr').length === {len(bos)}")
    page.wait_for_function(f"document.querySelector('#lt tbody td a').textContent === "
                           f"'{bos[0]}'")
    assert table_ids(page) == bos and len(bos) >= 2
    badges = page.eval_on_selector_all("#lt tbody tr", "trs => trs.map(tr => Array.from("
                                       "tr.querySelectorAll('.bd')).map(b => b.textContent))")
    assert badges == [q.names(i) for i in bos]
    # a filter that nothing passes: an empty table, and it says so
    page.select_option(f"select[data-flag='{DENSE}']", "only")
    page.select_option("select[data-flag='1']", "only")
    page.wait_for_function("document.getElementById('lfn').textContent.startsWith('0 of 12')")
    assert page.locator("#lt tbody tr").count() == 0 and page.text_content("#pg") == "page 1 of 1"


def test_quality_badges_and_filter_from_both_origins(session: Session) -> None:
    page = session.open("features/4.html")
    assert page.text_content("#quality .b-bos").startswith("BOS ")
    page = session.open("index.html")
    page.select_option("select[data-flag='1']", "hide")  # no dead latent
    page.wait_for_function("document.getElementById('lfn').textContent.startsWith('11 of 12')")
    assert 11 not in table_ids(page)
    # away and back: whatever the browser restores, the table agrees with the choices shown
    page.click("#lt tbody td a")
    page.wait_for_url("**/features/*.html")
    page.go_back()
    page.wait_for_load_state("load")
    page.wait_for_function("document.querySelectorAll('#lt tbody tr').length > 0")
    hidden = page.eval_on_selector("select[data-flag='1']", "s => s.value") == "hide"
    page.wait_for_function("(document.getElementById('lfn').textContent !== '') === " +
                           ("true" if hidden else "false"))
    assert (11 not in table_ids(page)) == hidden


def test_compact_embed_snippet_shows_the_page_as_a_card(browser: object,
                                                        tmp_path: Path) -> None:
    from generator.site.render import render_site

    site = render_site(make_store(), tmp_path / "site", EXPLANATIONS, quiet=True,
                       compact=True).out
    assert not (site / "embed").exists()
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((site / "features" / "3.html").resolve().as_uri())
    page.click("[data-copy=embed]")
    snippet = page.evaluate("window.fbLastCopy")
    src = re.search(r'src="([^"]+)"', snippet).group(1)
    assert src.endswith("features/3.html?embed")
    host = tmp_path / "host.html"
    host.write_text(f'<!doctype html><title>host</title><iframe id=f src="{src}" width=600 '
                    'height=500></iframe>', encoding="utf-8")
    page.goto(host.resolve().as_uri())
    frame = page.frame_locator("#f")
    assert frame.locator("h1").text_content() == "Latent 3"
    assert frame.locator("#top .exs li:visible").count() <= 3
    assert frame.locator("#neighbours").is_hidden() and frame.locator("header").is_hidden()
    assert frame.locator("p.more a").get_attribute("target") == "_blank"
    assert not errors
    page.close()


# ---------------------------------------------------------------------------------------------
# the latent map: the index's canvas and the latent pages' spot (generator/site/mapview.py)


def open_map(s: Session, path: str = "index.html") -> object:
    page = s.open(path)
    page.locator("#mapbox").scroll_into_view_if_needed()
    page.wait_for_selector("#mapbox[data-ready]")
    return page


def map_point(page: object, i: int) -> tuple[float, float]:
    p = page.evaluate(f"document.getElementById('mapbox').fbMap.screenOf({i})")
    return p["x"], p["y"]


PAINTED = """([x, y]) => {
  const c = document.querySelector('#mapbox canvas'), r = c.getBoundingClientRect();
  const k = c.width / r.width;
  const px = Math.floor((x - r.left) * k), py = Math.floor((y - r.top) * k);
  return c.getContext('2d').getImageData(px, py, 1, 1).data[3];
}"""


def test_map_draws_every_latent_on_one_canvas(session: Session) -> None:
    page = open_map(session)
    assert page.locator("#mapbox canvas").count() == 1
    assert page.locator("#mapbox *").count() == 1  # one canvas, no element per latent
    for i in range(12):
        assert page.evaluate(PAINTED, list(map_point(page, i))) == 255, i
    assert page.evaluate(PAINTED, [0, 0]) == 0  # outside the canvas / nothing painted
    options = page.eval_on_selector_all("#mapc option", "os => os.map(o => o.value)")
    assert options == ["d", "x", "am", ""]
    assert "log scale" in page.text_content("#mapl") and "dead" in page.text_content("#mapl")
    assert sum("map/points.js" in u for u in session.requests) == 1


def test_map_hover_shows_the_label_and_click_opens_the_latent(session: Session) -> None:
    page = open_map(session)
    page.mouse.move(*map_point(page, 0))
    page.wait_for_function("document.getElementById('tip').textContent.includes('cats sitting')")
    assert page.text_content("#tip").startswith("#0  density ")
    page.mouse.move(*map_point(page, 1))  # a hostile explanation stays text
    page.wait_for_function("document.getElementById('tip').textContent.startsWith('#1 ')")
    assert "<img src=x onerror=alert(1)>" in page.text_content("#tip")
    assert page.locator("#tip *").count() == 0
    page.mouse.move(*map_point(page, 11))  # dead, unexplained
    page.wait_for_function("document.getElementById('tip').textContent.includes('never fired')")
    page.mouse.move(*map_point(page, 4))
    page.wait_for_function("document.getElementById('tip').textContent.includes('top tokens: ')")
    page.mouse.click(*map_point(page, 4))
    page.wait_for_url("**/features/4.html")
    assert page.text_content("h1") == "Latent 4"


def test_map_zooms_pans_and_recolours(session: Session) -> None:
    page = open_map(session)
    view = "document.getElementById('mapbox').fbMap.view"
    page.click("[data-zoom='1']")
    assert page.evaluate(f"{view}.z") == 1.5
    x, y = map_point(page, 3)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -400)  # zooms in around the pointer: latent 3 stays under it
    page.wait_for_function(f"{view}.z > 1.5")
    x2, y2 = map_point(page, 3)
    assert abs(x2 - x) < 2 and abs(y2 - y) < 2
    page.mouse.down()  # a drag pans and opens nothing
    page.mouse.move(x - 80, y - 40, steps=5)
    page.mouse.up()
    x3, y3 = map_point(page, 3)
    assert abs(x3 - (x - 80)) < 2 and abs(y3 - (y - 40)) < 2
    assert page.url.endswith("index.html")
    before = page.text_content("#mapl")
    page.select_option("#mapc", "x")
    assert page.text_content("#mapl") != before and "log" not in page.text_content("#mapl")
    page.select_option("#mapc", "")
    assert page.text_content("#mapl") == ""
    page.click("[data-zoom='0']")
    assert page.evaluate(f"{view}.z") == 1
    page.focus("#mapbox canvas")
    page.keyboard.press("+")
    assert page.evaluate(f"{view}.z") == 1.5


def test_latent_page_marks_its_spot_and_opens_the_map_there(session: Session) -> None:
    page = session.open("features/7.html")
    page.locator("#mapnb img").scroll_into_view_if_needed()  # loading=lazy
    page.wait_for_function("document.querySelector('#mapnb img').naturalWidth === 200")
    neighbours = page.eval_on_selector_all("#mapnb ol.nb a", "as => as.map(a => a.textContent)")
    assert len(neighbours) == 5  # generator.site.mapview.N_MAP_NEIGHBOURS
    page.click("#mapnb a.thumb")
    page.wait_for_url("**/index.html#map=7")
    page.wait_for_selector("#mapbox[data-ready]")
    assert page.evaluate("document.getElementById('mapbox').fbMap.view.z") >= 8
    box = page.locator("#mapbox canvas").bounding_box()
    x, y = map_point(page, 7)  # centred
    assert abs(x - (box["x"] + box["width"] / 2)) < 2 and abs(y - (box["y"] + box["height"] / 2)) < 2
    page.mouse.move(x, y)
    page.wait_for_function("document.getElementById('tip').textContent.startsWith('#7 ')")
    page.go_back()
    page.wait_for_url("**/features/7.html")
    page.click("#mapnb ol.nb a >> nth=0")
    page.wait_for_url(f"**/features/{neighbours[0][1:]}.html")


def test_map_data_loads_when_scrolled_to(session: Session) -> None:
    session.page.set_viewport_size({"width": 1000, "height": 300})
    page = session.open("index.html")
    # every request the page makes on its own is done (none for 500 ms): the map's is not one
    page.wait_for_load_state("networkidle")
    assert not [u for u in session.requests if "map/points.js" in u]  # the index stays light
    page.locator("#mapbox").scroll_into_view_if_needed()
    page.wait_for_selector("#mapbox[data-ready]")
    assert sum("map/points.js" in u for u in session.requests) == 1


def test_map_on_a_phone_and_without_javascript(session: Session, browser: object,
                                               site: Path) -> None:
    session.page.set_viewport_size({"width": 375, "height": 700})
    page = open_map(session)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert page.locator("#mapbox canvas").bounding_box()["width"] <= 375
    context = browser.new_context(java_script_enabled=False)
    plain = context.new_page()
    plain.goto((site / "index.html").resolve().as_uri())
    plain.locator("#mapbox img").scroll_into_view_if_needed()
    plain.wait_for_function("document.querySelector('#mapbox img').naturalWidth === 200")
    assert plain.locator(".mapbar").is_hidden()
    context.close()


# ---------------------------------------------------------------------------------------------
# the prompt view (generator/site/views.py, static/prompt.js)


@pytest.fixture(scope="module")
def prompt_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake store with the hostile prompts (tests/fake_prompts.py) and a corpus view
    (tests/fake_corpus.py; its tables of 3 latents per order leave latents outside them), under
    root/repo/."""
    from generator.site.render import render_site
    from tests.fake_corpus import with_corpus
    from tests.fake_prompts import with_prompts

    out = tmp_path_factory.mktemp("prompt-served") / "repo"
    return render_site(with_corpus(with_prompts(make_store()), k=3), out, EXPLANATIONS,
                       quiet=True).out


@pytest.fixture(scope="module")
def prompt_http(prompt_site: Path) -> Iterator[str]:
    import threading

    from generator.site.serve import make_server

    server = make_server(prompt_site.parent, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/repo/"
    server.shutdown()
    server.server_close()


@pytest.fixture(params=MODES)
def prompt_session(request: pytest.FixtureRequest, browser: object,
                   prompt_site: Path) -> Iterator[Session]:
    base = (prompt_site.resolve().as_uri() + "/" if request.param == "file"
            else request.getfixturevalue("prompt_http"))
    with open_session(browser, base) as s:
        dialogs: list[str] = []
        s.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        yield s
        assert not dialogs, f"a prompt ran script: {dialogs}"
    outside = [u for u in s.requests if not u.startswith(base)]
    assert not outside, f"requests left the site: {outside}"


def prompt_blob(page: object) -> dict:
    return page.evaluate("JSON.parse(document.getElementById('fb-prompt').textContent)")


def panel_rows(page: object) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#ptok tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))")


def test_prompt_hover_shows_the_token_latents(prompt_session: Session) -> None:
    page = prompt_session.open("prompts/0.html")
    blob = prompt_blob(page)
    tokens = page.locator("#ptoks > i")
    assert tokens.count() == len(blob["t"])
    for pos in (1, 4):
        tokens.nth(pos).hover()
        page.wait_for_selector(f"#ptok h3:has-text('Position {pos}')")
        rows = panel_rows(page)
        want = blob["t"][pos]
        assert [r[0] for r in rows] == [f"#{e[0]}" for e in want]
        assert [float(r[2]) for r in rows] == [e[1] for e in want]
        assert [r[3] for r in rows] == [("+" if e[2] > 0 else "") + str(e[2]).removesuffix(".0")
                                        if e[2] is not None else "n/a" for e in want]
        assert rows[0][1] == blob["n"][str(want[0][0])][0]  # the label, as text
    # the BOS marker says what it is; the panel stays when the pointer leaves the tokens
    tokens.nth(0).hover()
    page.wait_for_selector("#ptok:has-text('BOS / document boundary')")
    page.mouse.move(5, 5)
    assert "BOS / document boundary" in page.locator("#ptok").text_content()
    assert page.locator("#ptoks > i.hov").count() == 0
    # a latent link opens its page, inside the site
    tokens.nth(1).hover()
    first = blob["t"][1][0][0]
    page.click("#ptok tbody tr >> nth=0 >> a")
    page.wait_for_url(f"**/features/{first}.html")
    assert page.locator("h1").text_content() == f"Latent {first}"


def test_prompt_select_by_click_and_keyboard(prompt_session: Session) -> None:
    page = prompt_session.open("prompts/3.html")
    tokens = page.locator("#ptoks > i")
    tokens.nth(2).click()
    page.mouse.move(5, 5)  # the selection stays when the pointer leaves
    page.wait_for_selector("#ptok h3:has-text('Position 2')")
    assert "cur" in tokens.nth(2).get_attribute("class")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#ptok h3:has-text('Position 3')")
    page.keyboard.press("End")  # the last token; a BOS is stepped over
    n = tokens.count()
    page.wait_for_selector(f"#ptok h3:has-text('Position {n - 1}')")
    assert "no next token" in page.locator("#ptok").text_content()
    assert all(r[3] == "n/a" for r in panel_rows(page))
    page.keyboard.press("Escape")
    page.wait_for_selector("#ptok:has-text('Hover or select a token')")
    assert page.locator("#ptoks > i.cur").count() == 0


def test_prompt_latent_table_sorts(prompt_session: Session) -> None:
    page = prompt_session.open("prompts/1.html")
    blob = prompt_blob(page)
    ids = page.eval_on_selector_all("#pl tbody tr", "rows => rows.map(r => +r.dataset.l)")
    for label in ["total |Δloss|", "total activation", "max activation"]:
        col = ["max activation", "total activation", "total |Δloss|"].index(label)
        page.click(f"#pl button:text-is('{label}')")
        shown = page.eval_on_selector_all("#pl tbody tr:not([hidden])",
                                          "rows => rows.map(r => +r.dataset.l)")
        ranked = [i for _, i in sorted(zip([r[col] for r in blob["r"]], ids, strict=True))]
        assert shown == ranked[:blob["k"]]
        assert page.locator("#pl th[aria-sort=descending]").text_content() == label
        assert page.locator("#plk").text_content() == label
        values = page.eval_on_selector_all(
            "#pl tbody tr:not([hidden])", f"rows => rows.map(r => +r.cells[{col + 2}].textContent)")
        assert values == sorted(values, reverse=True)


def test_prompt_latent_hover_colours_its_tokens(prompt_session: Session) -> None:
    page = prompt_session.open("prompts/2.html")
    blob = prompt_blob(page)
    row = page.locator("#pl tbody tr").first
    latent = row.get_attribute("data-l")
    row.hover()
    lit = page.eval_on_selector_all(
        "#ptoks > i", "ts => ts.flatMap((t, p) => /\\ba[1-9]\\b/.test(t.className) ? [p] : [])")
    assert lit == blob["a"][latent][0::2] and lit
    count = "ts => ts.filter(t => /\\ba[1-9]\\b/.test(t.className)).length"
    page.mouse.move(5, 5)
    assert page.eval_on_selector_all("#ptoks > i", count) == 0
    row.locator("td").nth(1).click()  # pinned: stays when the pointer leaves
    page.mouse.move(5, 5)
    assert page.eval_on_selector_all("#ptoks > i", count) == len(lit)


def test_hostile_prompts_show_as_text(prompt_session: Session) -> None:
    from tests.fake_store import HOSTILE_VOCAB

    for n in range(4):
        page = prompt_session.open(f"prompts/{n}.html")
        assert page.locator("#ptoks img, main img, main script").count() == 0
        assert page.evaluate("document.querySelectorAll('script').length") == 3
    page = prompt_session.open("prompts/0.html")
    texts = page.eval_on_selector_all("#ptoks > i", "ts => ts.map(t => t.textContent)")
    assert texts[1] == HOSTILE_VOCAB[1].decode() and texts[2] == HOSTILE_VOCAB[2].decode()
    assert texts[4] == "\\u202eevil" and texts[5] == "\\x00"  # escapes, not the characters
    page.locator("#ptoks > i").nth(1).hover()
    assert "</script>" in page.locator("#ptok h3").text_content()
    listing = prompt_session.open("prompts/index.html")
    assert listing.locator("td.ptext").first.text_content() == (
        "</script><script>alert(1)</script> the cat sat")
    assert "\\u202eevil RTL override\\u202c and \\x00 NUL" in listing.locator(
        "td.ptext").nth(2).text_content()
    listing.click("td.ptext a >> nth=3")
    listing.wait_for_url("**/prompts/3.html")
    index = prompt_session.open("index.html")
    index.click("#prompts a")
    index.wait_for_url("**/prompts/index.html")


# ---------------------------------------------------------------------------------------------
# the corpus view (the prompt view of every kept sequence)


def test_an_example_opens_its_corpus_page_at_its_peak(prompt_session: Session) -> None:
    page = prompt_session.open("features/2.html")
    page.click("#ex-0 em")
    page.wait_for_selector("#ex-0.full a.pvl")
    href = page.locator("#ex-0 a.pvl").get_attribute("href")
    seq, peak = re.fullmatch(r"\.\./corpus/(\d+)\.html#t=(\d+)&l=2", href).groups()
    page.click("#ex-0 a.pvl")
    page.wait_for_url(f"**/corpus/{seq}.html#t={peak}&l=2")
    assert page.locator("h1").text_content() == f"Sequence {seq}"
    # the peak token is selected and the panel lists its latents, latent 2 among them
    page.wait_for_selector(f"#ptok h3:has-text('Position {peak}')")
    cur = page.eval_on_selector_all("#ptoks > i", "ts => ts.findIndex(t => t.classList.contains('cur'))")
    assert cur == int(peak)
    blob = prompt_blob(page)
    rows = panel_rows(page)
    top = [f"#{e[0]}" for e in blob["t"][int(peak)]]
    assert [r[0] for r in rows][:len(top)] == top and "#2" in [r[0] for r in rows]
    # latent 2, whose example linked here, is lit (pinned) on arrival
    lit = page.eval_on_selector_all(
        "#ptoks > i", "ts => ts.flatMap((t, p) => /\\ba[1-9]\\b/.test(t.className) ? [p] : [])")
    assert lit == blob["a"]["2"][0::2] and int(peak) in lit
    # Δloss where the build has it (this sequence is latent 2's example), n/a elsewhere
    for r, e in zip(rows, blob["t"][int(peak)], strict=False):
        assert (r[3] == "n/a") == (len(e) == 2)
    assert "computed only for the latents whose page shows this sequence" in page.locator(
        "#ptok").text_content()


def test_the_linking_latent_is_listed_where_it_is_not_among_the_top(
        prompt_session: Session, prompt_site: Path) -> None:
    """#t=P&l=I with latent I active at P but not among P's most active: the panel lists I last,
    with its activation and Δloss from its example (the blob's a and x)."""
    import json

    found = None
    for path in sorted((prompt_site / "corpus").glob("[0-9]*.html")):
        raw = re.search(r"id=fb-prompt>(.*?)</script>", path.read_text(), re.S).group(1)
        blob = json.loads(raw)
        for key, dl in blob.get("x", {}).items():
            for pos in dl[0::2]:
                if all(str(e[0]) != key for e in blob["t"][pos]):
                    found = (path.stem, pos, key, blob)
                    break
            if found:
                break
        if found:
            break
    assert found, "the fake corpus has a linking latent outside some token's top"
    seq, pos, key, blob = found
    page = prompt_session.open(f"corpus/{seq}.html#t={pos}&l={key}")
    page.wait_for_selector(f"#ptok h3:has-text('Position {pos}')")
    rows = panel_rows(page)
    assert len(rows) == len(blob["t"][pos]) + 1 and rows[-1][0] == f"#{key}"
    a, x = blob["a"][key], blob["x"][key]
    act = a[a[0::2].index(pos) * 2 + 1]
    dl = x[x[0::2].index(pos) * 2 + 1]
    assert float(rows[-1][2]) == act
    assert rows[-1][3] == ("n/a" if dl is None else ("+" if dl > 0 else "") + f"{dl:g}")
    assert page.locator("#ptok tr.origin").count() == 1
    assert "whose example you came from" in page.locator("#ptok").text_content()


def test_enter_opens_the_result_of_what_was_typed_last(prompt_session: Session) -> None:
    """Typed fast, Enter arrives before the last search has shown its results: it waits for
    them instead of opening an earlier text's first result."""
    page = prompt_session.open("index.html")

    def first_result(query: str) -> str | None:
        page.fill("#q", "")
        page.wait_for_function("document.getElementById('qs').textContent === ''")
        page.fill("#q", query)
        page.wait_for_function("document.getElementById('qs').textContent !== ''")
        options = page.locator("#qr li[role=option] a")
        return options.first.get_attribute("href") if options.count() else None

    # latent ids: "1" lists #1 first, "10" lists #10 first, so a stale list would open #1
    prefix, text = "1", "10"
    want = first_result(text)
    assert want is not None and first_result(prefix) not in (None, want)
    first_result(prefix)
    page.locator("#q").press_sequentially(text[len(prefix):], delay=5)
    page.keyboard.press("Enter")
    page.wait_for_url("**/features/*.html")
    assert page.url.endswith(want.removeprefix("."))


def test_corpus_page_colours_table_and_other_latents(prompt_session: Session) -> None:
    page = prompt_session.open("corpus/index.html")
    page.click("td.ptext a >> nth=1")
    page.wait_for_url("**/corpus/*.html")
    blob = prompt_blob(page)
    lit_js = "ts => ts.flatMap((t, p) => /\\ba[1-9]\\b/.test(t.className) ? [p] : [])"
    row = page.locator("#pl tbody tr").first
    row.hover()
    assert page.eval_on_selector_all("#ptoks > i", lit_js) == blob["a"][row.get_attribute("data-l")][0::2]
    # a latent outside the table: coloured where the token lists name it
    table = {r.get_attribute("data-l") for r in page.locator("#pl tbody tr").all()}
    outside = next((p, e[0]) for p, top in enumerate(blob["t"]) for e in top
                   if str(e[0]) not in table)
    page.locator("#ptoks > i").nth(outside[0]).click()
    page.mouse.move(5, 5)
    page.locator(f"#ptok tr[data-l='{outside[1]}'] td").nth(1).hover()
    want = [p for p, top in enumerate(blob["t"]) if any(e[0] == outside[1] for e in top)]
    assert page.eval_on_selector_all("#ptoks > i", lit_js) == want
    # sorting: two orders, no Δloss button
    assert page.locator("#pl button[data-sort]").count() == 2
    page.click("#pl button[data-sort='1']")
    assert page.locator("#plk").text_content() == "total activation"
