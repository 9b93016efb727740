"""generator.render: structure of every page type, links, escaping, determinism, atomicity,
purity (no torch), explanations loading, search index and size budget. No browser here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from html import unescape as html_unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from generator import pages as pages_mod
from generator import render as render_mod
from generator.charts import (
    LEVEL_ALPHAS,
    LEVELS,
    activation_chart,
    interval_alphas,
    logit_chart,
    sig,
)
from generator.errors import UserError
from generator.quality import DENSE, FLAGS, latent_quality
from generator.render import load_explanations, relative_url, render_site
from generator.search import B64, fnv1a32, shard_of, terms_of
from tests.fake_store import EXPLANATIONS, make_scaled_store, make_store

D_SAE = 12
DEAD = 11
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


# ---------------------------------------------------------------------------------------------
# layout


def test_layout(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / ".nojekyll").is_file()
    for i in range(D_SAE):
        assert (site / "features" / f"{i}.html").is_file()
        assert (site / "embed" / f"{i}.html").is_file()
    assert (site / "search" / "id" / "0.js").is_file()
    assert list((site / "search").glob("s*.js"))
    assert list((site / "seqs").glob("*.js"))


def test_static_files_are_content_hashed(site: Path) -> None:
    names = sorted(p.name for p in (site / "static").iterdir())
    assert any(re.fullmatch(r"app\.[0-9a-f]{10}\.js", n) for n in names), names
    assert any(re.fullmatch(r"style\.[0-9a-f]{10}\.css", n) for n in names), names
    for path in (site / "static").iterdir():
        digest = path.name.split(".")[-2]
        assert hashlib.sha256(path.read_bytes()).hexdigest().startswith(digest)


def test_report(site_report: render_mod.RenderReport) -> None:
    assert site_report.latents == D_SAE
    assert site_report.pages == 2 * D_SAE + 1
    assert site_report.total_bytes == sum(site_report.bytes_by_part.values())
    assert site_report.total_bytes == sum(p.stat().st_size for p in site_report.out.rglob("*")
                                          if p.is_file())


# ---------------------------------------------------------------------------------------------
# links: relative, resolving, nothing leaves the site


@pytest.mark.parametrize("which", ["site", "bare_site"])
def test_every_link_is_relative_and_resolves(which: str, request: pytest.FixtureRequest) -> None:
    site: Path = request.getfixturevalue(which)
    for path in html_files(site):
        page = Page(path)
        for url in page.urls():
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{path}: absolute URL {url}"
            assert not url.startswith("/"), f"{path}: root-relative URL {url}"
            if not parts.path:
                assert parts.fragment in page.ids(), f"{path}: dangling anchor {url}"
                continue
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{path}: {url} does not resolve"
            assert site.resolve() in target.parents, f"{path}: {url} leaves the site"


def test_no_network_resources_anywhere(site: Path) -> None:
    for path in site.rglob("*"):
        if path.suffix in {".html", ".js", ".css"}:
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"(src|href)=\"?https?://", text), path
            assert "fetch(" not in text and "import(" not in text, path
            assert "@import" not in text and "url(http" not in text, path


def test_relative_url_helper() -> None:
    assert relative_url("index.html", "index.html") == "index.html"
    assert relative_url("index.html", "features/3.html") == "../index.html"
    assert relative_url("features/4.html", "features/3.html") == "4.html"
    assert relative_url("embed/3.html", "features/3.html") == "../embed/3.html"
    assert relative_url("features/3.html#ex-2", "index.html") == "features/3.html#ex-2"
    assert relative_url("#top", "features/3.html") == "#top"


# ---------------------------------------------------------------------------------------------
# latent pages


def test_feature_page_sections(site: Path) -> None:
    page = Page(site / "features" / "0.html")
    ids = page.ids()
    for section in ("acts", "logits", "top", "intervals", "ablation", "toptokens", "neighbours",
                    "legend", "fb-data"):
        assert section in ids, section
    assert page.find("h1") and "Latent 0" in page.all_text
    assert EXPLANATIONS[0] in page.all_text
    assert len(page.find("svg")) == 2  # activation + logit histograms, inline
    assert page.find("article")[0]["data-embed"] == "../embed/0.html"  # app.js adds the buttons
    assert not page.find("button")  # script-only controls are not in the page
    assert page.find("a", rel="next")[0]["href"] == "1.html"
    assert not page.find("a", rel="prev")
    assert "LayerNorm folded into" in page.all_text
    assert "W_dec" in page.all_text
    assert "Method: exact" in page.all_text


def test_examples_have_anchors_and_data(site: Path) -> None:
    data = make_store()
    page = Page(site / "features" / "3.html")
    blob = json.loads(re.search(r"id=fb-data>(.*?)</script>", page.raw, re.S).group(1))
    n_examples = int((data.examples.latent == 3).sum())
    assert len(examples_in(page)) == n_examples
    assert {f"ex-{n}" for n in range(n_examples)} <= page.ids()
    assert blob["m"] == float(f"{data.latents.max_act[3]:.3g}")
    assert page.raw.count("class=\"a9 m") + page.raw.count("class=a9 m") >= 1
    for seq, start, end, peak, cut, acts, colours, dl in examples_in(page):
        assert start <= peak < end and seq in set(data.seq_ids.tolist())
        assert acts[peak] == max(acts.values()) and cut >= 0
        assert all(1 <= v <= pages_mod.ACT_LEVELS for v in acts.values())
        assert all(start <= p < end for p in acts) and not any(start <= p < end for p in colours)
        assert all(1 <= v <= LEVELS for v in colours.values())
        outside = [p for p in dl if not start <= p < end]
        assert len(outside) <= pages_mod.DLOSS_OUTSIDE
        assert all(abs(v) >= max(10, cut) for p, v in dl.items() if not start <= p < end)


def test_example_codes_carry_levels_inside_and_colours_outside_the_window(site: Path) -> None:
    data = make_store()
    builder = pages_mod.PageBuilder(data, {})
    for i in (2, 3):
        peak = builder.max3[i]
        rows = builder.shown_rows(i).tolist()
        codes = examples_in(Page(site / "features" / f"{i}.html"))
        assert len(rows) == len(codes)
        for row, (seq, start, end, _, _, acts, colours, _) in zip(rows, codes, strict=True):
            assert seq == data.examples.seq[row]
            bos = builder.bos_mask(builder.example_tokens(row))
            want = {p: pages_mod.act_level(float(a), peak)
                    for p, a in enumerate(np.asarray(data.examples.acts[row]).tolist())
                    if a > 0 and not bos[p]}
            assert acts == {p: v for p, v in want.items() if start <= p < end}
            assert colours == {p: pages_mod.level(v) for p, v in want.items()
                               if not start <= p < end}


def test_example_codes_round_trip() -> None:
    acts, dl = {0: 1, 5: 1000, 16: 500, 17: 112, 127: 37}, {1: -12, 6: 600, 90: 31, 2000: -70000}
    code = pages_mod.encode_example(123456, 3, 17, 5, 44, acts, dl)
    assert set(code) <= set(pages_mod.B64)
    # exact levels inside the window [3, 17), colour classes outside
    assert pages_mod.decode_example(code) == (123456, 3, 17, 5, 44, {5: 1000, 16: 500},
                                              {0: 1, 17: 2, 127: 1}, dl)
    assert [pages_mod.varint(x) for x in (0, 31, 32, 1023)] == ["A", "f", "gB", "_f"]


def test_window_elements_match_the_documented_positions(site: Path) -> None:
    """The k-th <i> of a window that is not .bos is the k-th of sorted(acts ∪ Δloss ∪ {peak})
    in [start, end)."""
    page = Page(site / "features" / "2.html")
    for n, (_seq, start, end, peak, _cut, acts, _colours, dl) in enumerate(examples_in(page)):
        li = re.search(rf"<li id=ex-{n}>(.*?)(?=<li|</ol>)", page.raw).group(1)
        wanted = {peak, *acts, *dl}
        elements = li.count("<i") - li.count(pages_mod.BOS_HTML)
        assert elements == len([p for p in wanted if start <= p < end])


def test_bos_positions_are_muted_markers_outside_the_statistics(site: Path) -> None:
    """BOS tokens (bos_id) show as a muted marker with a tooltip, in every window and in the
    sequence files, and never carry an activation or a Δloss in the page data."""
    data = make_store()
    bos_id = data.meta.bos_id
    seq_tokens = dict(zip(data.seq_ids.tolist(), data.seq_tokens, strict=True))
    mid_sequence = 0
    for i in range(D_SAE):
        page = Page(site / "features" / f"{i}.html")
        for n, (seq, start, end, _peak, _cut, acts, colours, dl) in enumerate(examples_in(page)):
            bos = set(np.flatnonzero(seq_tokens[seq] == bos_id).tolist())
            assert not bos & {*acts, *colours, *dl}, (i, n)
            li = re.search(rf"<li id=ex-{n}>(.*?)(?=<li|</ol>)", page.raw).group(1)
            assert li.count(pages_mod.BOS_HTML) == len([p for p in bos if start <= p < end])
            assert "endoftext" not in li  # the marker replaces the BOS token's own text
            mid_sequence += len([p for p in bos if start <= p < end and p > 0])
    assert mid_sequence > 0  # the fake store has document boundaries inside windows
    page = Page(site / "features" / "0.html")
    marks = [a for t, a in page.tags if t == "i" and a.get("class") == "bos"]
    assert marks and "excluded from statistics" in page.all_text  # the legend says it
    assert "⟨bos⟩" in page.all_text and "document boundary (BOS)" in page.all_text
    (symbols,) = load_script_call(site / "seqs" / "t.js", "fbSeqTable")
    assert symbols[0] == 0 and 0 not in symbols[1:] and len(set(map(str, symbols))) == len(symbols)
    for path in (site / "seqs").glob("[0-9]*.js"):
        k, seqs = load_script_call(path, "fbSeqs")
        for seq, code in seqs.items():
            displays = [symbols[x] for x in pages_mod.read_varints(code)]
            assert len(displays) == data.meta.ctx
            assert [p for p, d in enumerate(displays) if d == 0] == np.flatnonzero(
                seq_tokens[int(seq)] == bos_id).tolist()


def test_unknown_bos_renders_tokens_as_text(tmp_path: Path) -> None:
    data = make_store()
    unknown = type(data)(meta=dataclasses.replace(data.meta, bos_id=-1), latents=data.latents,
                         examples=data.examples, seq_ids=data.seq_ids,
                         seq_tokens=data.seq_tokens, vocab=data.vocab)
    out = render_site(unknown, tmp_path / "s", quiet=True).out
    page = Page(out / "features" / "0.html")
    assert "class=bos" not in page.raw and "document boundary" not in page.all_text
    assert "&lt;|endoftext|&gt;" in page.raw


def test_interval_groups_show_range_and_count(site: Path) -> None:
    data = make_store()
    page = Page(site / "features" / "0.html")
    n_int = data.latents.interval_counts.shape[1]
    headings = re.findall(r"<h3 id=int-(\d+)[^>]*>Interval \d+: \(([^,]+), ([^\]]+)\] · ([\d,]+) seq",
                          page.raw)
    assert len(headings) == n_int
    for j, _lo, _hi, count in headings:
        assert int(count.replace(",", "")) == data.latents.interval_counts[0][int(j)]


def test_ablation_is_said_to_leave_bos_untouched(site: Path) -> None:
    page = Page(site / "features" / "0.html")
    ablation = re.search(r"<section id=ablation>(.*?)</section>", page.raw, re.S).group(1)
    assert "at every non-BOS position" in ablation
    assert "BOS positions are left untouched" in ablation
    legend = re.search(r"<p class=note id=legend>(.*?)</p>", page.raw, re.S).group(1)
    assert "removed at every non-BOS position" in legend


def test_histogram_bins_say_what_they_count(site: Path) -> None:
    """Each chart carries its bins (counts, range, what is counted); the tooltip text is
    `Bins.tip`, which static/app.js reproduces (tests/test_browser.py compares them)."""
    lat = make_store().latents
    page = Page(site / "features" / "0.html")
    act, logit = page.find("svg")
    n_bins, n_int = lat.hist.shape[1], lat.interval_counts.shape[1]
    assert pages_mod.read_varints(act["data-c"]) == lat.hist[0].tolist()
    f32 = np.float32  # the range ships as float32, what a real store holds
    assert [f32(x) for x in act["data-x"].split()] == [0, f32(lat.max_act[0])]
    assert act["data-t"] == "token|activation|(]]" and act["data-i"] == str(n_int)
    assert pages_mod.read_varints(logit["data-c"]) == lat.logit_hist[0].tolist()
    assert [f32(x) for x in logit["data-x"].split()] == [f32(lat.logit_lo[0]),
                                                         f32(lat.logit_hi[0])]
    assert logit["data-t"] == "vocabulary token|logit effect|[)]" and "data-i" not in logit

    chart = activation_chart(lat.hist[0], lat.interval_counts[0], float(lat.max_act[0]))
    peak = float(lat.max_act[0])
    c0 = int(lat.hist[0][0])
    assert chart.bins.tip(0) == (f"{c0:,} token{'' if c0 == 1 else 's'} with activation in "
                                 f"(0, {sig(peak / n_bins)}] (interval 1)")
    last = chart.bins.tip(n_bins - 1)
    assert last.endswith(f", {sig(peak)}] (interval {n_int})")
    assert re.match(r"[\d,]+ tokens? with activation in \(", last)
    logits = logit_chart(lat.logit_hist[0], float(lat.logit_lo[0]), float(lat.logit_hi[0]))
    assert re.fullmatch(r"[\d,]+ vocabulary tokens? with logit effect in \[[^,]+, [^)]+\)",
                        logits.bins.tip(0))
    assert logits.bins.tip(len(lat.logit_hist[0]) - 1).endswith(f"{sig(float(lat.logit_hi[0]))}]")

    density = Page(site / "index.html").find("svg")[0]
    assert density["data-t"] == "latent|density|[)]" and "data-l" in density
    assert sum(pages_mod.read_varints(density["data-c"])) == int((lat.n_active > 0).sum())


def test_interval_colours_are_distinct(scaled_sites: dict[str, Path]) -> None:
    """Every interval has its own colour, on its bars and on its heading (with 10 intervals, the
    nine activation colours alone gave intervals 9 and 10 the same)."""
    page = Page(scaled_sites["default"] / "features" / "0.html")
    headings = {int(a["id"][4:]): a["style"] for _, a in page.tags
                if a.get("id", "").startswith("int-")}
    assert sorted(headings) == list(range(10))
    assert len(set(headings.values())) == 10, headings
    chart = re.search(r"<section id=acts>(.*?)</section>", page.raw, re.S).group(1)
    bars = re.findall(r"<path class=ai style=(--o:[.\d]+) d=", chart)
    # 50 bins over 10 intervals: one run of bars per interval, lowest first, in its colour
    assert bars == [headings[j] for j in range(10)]
    opacities = [float(headings[j].split(":")[1]) for j in range(10)]
    assert opacities == sorted(opacities)


def test_interval_colours_are_distinct_for_any_number_of_intervals() -> None:
    """Intervals get interpolated shades of the activation colour: distinct and rising for
    every count (the CLI sets no maximum), nine of them exactly the token colours a1..a9."""
    css = (Path(render_mod.resource_dir("static")) / "style.css").read_text()
    palette = [float(v) for v in re.findall(r"--a\d: rgba\(var\(--tok\), ([.\d]+)\)", css)]
    assert palette == list(LEVEL_ALPHAS)
    assert [float(a) for a in interval_alphas(LEVELS)] == list(LEVEL_ALPHAS)
    for n in [*range(1, 260), 641, 1000, 4096]:
        alphas = interval_alphas(n)
        values = [float(a) for a in alphas]
        assert len(set(alphas)) == n, n
        assert all(a < b for a, b in zip(values, values[1:], strict=False)), n
        assert min(values) >= LEVEL_ALPHAS[0] - 1e-9 and max(values) <= LEVEL_ALPHAS[-1] + 1e-9


def test_dead_latent_page(site: Path) -> None:
    page = Page(site / "features" / f"{DEAD}.html")
    assert "dead" in page.ids()
    assert "never activated" in page.all_text
    assert "top" not in page.ids() and "acts" not in page.ids()
    assert "logits" in page.ids()  # the decoder direction still has logit effects
    assert not page.find("a", rel="next")



def test_embed_files_are_stubs_opening_the_card(site: Path) -> None:
    """embed/<id>.html stays a working iframe URL but only redirects (script and meta refresh,
    relative URL) to the latent page's card mode."""
    for i in (0, DEAD):
        raw = (site / "embed" / f"{i}.html").read_text(encoding="utf-8")
        card = f"../features/{i}.html?embed"
        assert f'<meta http-equiv=refresh content="0;url={card}">' in raw
        assert f'location.replace("{card}"+location.hash)' in raw
        assert f'<a href="{card}">Latent {i}</a>' in raw
        assert "noindex" in raw and len(raw.encode()) < 400


def test_missing_optional_fields_are_said(bare_site: Path) -> None:
    page = Page(bare_site / "features" / "0.html")
    text = page.all_text
    assert "Ablation not computed" in text
    assert "Top tokens not computed" in text
    assert text.count("Not computed for this build") == 2  # both neighbour kinds
    assert all(e[7] == {} for e in examples_in(page))
    index = Page(bare_site / "index.html")
    assert not index.find("button", **{"data-sort": "am"})


def test_link_preview_tags(site: Path) -> None:
    page = Page(site / "features" / "0.html")
    title = "".join(re.findall(r"<title>(.*?)</title>", page.raw)[:1])
    assert title.startswith("Latent 0: cats sitting on mats")
    assert EXPLANATIONS[0] in page.meta("description")
    # og:title / og:description would only repeat these (previews fall back to them)
    assert 'property=og:title' not in page.raw and 'property=og:description' not in page.raw
    assert page.meta("og:type") == "article"
    assert page.meta("twitter:card") == "summary"
    unexplained = Page(site / "features" / "4.html")
    assert "promotes" in unexplained.meta("description")


def test_neighbours_link_to_pages(site: Path) -> None:
    data = make_store()
    page = Page(site / "features" / "1.html")
    hrefs = {a["href"] for a in page.find("a")}
    for j in data.latents.nb_cos_ids[1]:
        assert f"{j}.html" in hrefs


# ---------------------------------------------------------------------------------------------
# escaping of hostile corpus text and metadata


def test_corpus_markup_never_reaches_html_raw(site: Path) -> None:
    for path in html_files(site):
        raw = path.read_text(encoding="utf-8")
        assert "<img src=x" not in raw, path  # the hostile token (the map's pictures are <img>)
        assert raw.count("</script>") == raw.count("<script"), path
        assert "\u202e" not in raw and "\x00" not in raw, path
        assert "<b>\n" not in raw  # the model name "<b>" stays text
    page = Page(site / "features" / "1.html")
    assert "<img src=x onerror=alert(1)>" in page.all_text  # shown, as text


def test_hostile_tokens_render_readably(site: Path) -> None:
    text = "".join(Page(p).all_text for p in html_files(site / "features"))
    assert "€" in text  # merged from two partial tokens
    assert "\\xff" in text and "\\u202e" in text and "\\x00" in text
    assert "😀" in text and "中文" in text
    assert "\ufffd" not in text  # never the replacement character (mojibake)


def test_data_blob_cannot_close_its_script(site: Path) -> None:
    for path in html_files(site):
        raw = path.read_text(encoding="utf-8")
        for blob in re.findall(r"id=fb-data>(.*?)</script>", raw, re.S):
            assert "<" not in blob and ">" not in blob
            json.loads(blob)


# ---------------------------------------------------------------------------------------------
# index, table, search


def test_index_page(site: Path) -> None:
    page = Page(site / "index.html")
    text = page.all_text
    for expected in ("fake-model <b>", "blocks.0.hook_resid_post", "hand-made corpus",
                     "2025-01-02", "L0", "dead"):
        assert expected in text, expected
    rows = re.findall(r"<tr><td><a href=\"features/(\d+)\.html\">", page.raw)
    assert rows == [str(i) for i in range(D_SAE)]
    search = page.find("input", id="q")[0]
    assert search["data-shards"] == str(len(list((site / "search").glob("s*.js"))))
    assert page.find("svg")  # log-density histogram
    assert not page.find("script", src="search/latents.js")  # no table data up front
    manifest = json.loads(re.search(r"id=fb-table>(.*?)</script>", page.raw, re.S).group(1))
    assert manifest["n"] == D_SAE and manifest["rows"] == pages_mod.TABLE_PAGE


def examples_in(page: Page) -> list[tuple]:
    """The decoded example codes of a page's data blob (see generator.pages)."""
    blob = json.loads(re.search(r"id=fb-data>(.*?)</script>", page.raw, re.S).group(1))
    assert isinstance(blob["e"], str) and isinstance(blob["m"], float | int)
    return [pages_mod.decode_example(code) for code in blob["e"].split(" ") if code]


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


def test_table_files(site: Path) -> None:
    manifest = table_manifest(site)
    assert manifest["v"] == 4 and manifest["n"] == D_SAE
    assert manifest["cols"] == ["d", "x", "t", "e", "am", "af", "q", "b", "f", "s", "c"]
    assert set(manifest["sorts"]) == {"id", "d", "x", "e", "am", "af", "b", "f", "s", "c"}
    assert manifest["flags"] == [list(f) for f in FLAGS]
    rows = table_order(site, "id")
    assert [r[0] for r in rows] == list(range(D_SAE))
    assert rows[DEAD][1] == 0 and rows[0][4] == EXPLANATIONS[0]
    data = make_store()
    assert rows[3][2] == float(f"{data.latents.max_act[3]:.3g}")


@pytest.mark.parametrize("key", ["id", "d", "x", "e", "am", "af", "b", "f", "s", "c"])
def test_every_sort_order_covers_every_latent_once(site: Path, key: str) -> None:
    manifest = table_manifest(site)
    col = 0 if key == "id" else manifest["cols"].index(key) + 1
    rows = table_order(site, key)
    assert sorted(r[0] for r in rows) == list(range(D_SAE))
    valid = manifest["sorts"][key]
    values = [r[col] for r in rows]
    assert all(v not in (None, "") for v in values[:valid])
    assert all(v in (None, "") for v in values[valid:])
    assert [r[0] for r in rows[valid:]] == sorted(r[0] for r in rows[valid:])
    natural = sorted(rows[:valid], key=lambda r: (r[col], r[0]) if key in ("id", "e")
                     else (-r[col], r[0]))
    assert rows[:valid] == natural


def test_small_table_files_page_the_table(tmp_path: Path) -> None:
    site = render_site(make_store(), tmp_path / "s", EXPLANATIONS, quiet=True, table_rows=5,
                       shard_bytes=64).out
    manifest = table_manifest(site)
    assert manifest["rows"] == 5 and manifest["sorts"]["e"] == len(EXPLANATIONS)
    for key in manifest["sorts"]:
        assert len(list((site / "search" / key).glob("[0-9]*.js"))) == 3  # 12 rows: 5 + 5 + 2
        assert (site / "search" / key / "q.js").is_file()
        assert sorted(r[0] for r in table_order(site, key)) == list(range(D_SAE))
    assert "page 1 of 3" in Page(site / "index.html").all_text
    assert len(list((site / "search").glob("s*.js"))) > 1


def test_no_explanations_means_no_explanation_sort(bare_site: Path) -> None:
    manifest = table_manifest(bare_site)
    assert "e" not in manifest["sorts"] and "am" not in manifest["cols"]
    assert not (bare_site / "search" / "e").exists()
    assert not Page(bare_site / "index.html").find("button", **{"data-sort": "e"})


# ---------------------------------------------------------------------------------------------
# quality signals (generator/quality.py)


def fake_quality():
    data = make_store()
    return data, latent_quality(data.latents, data.meta.n_tokens)


def test_the_fake_store_raises_every_flag() -> None:
    _, q = fake_quality()
    assert q.names(DEAD) == ["dead", "BOS"]  # never active on included positions, but at BOS
    assert "BOS" in q.names(4) and "first position" in q.names(9)
    assert q.names(7) == ["single-token"] and q.names(0) == ["dense"]


def test_latent_pages_show_their_flags_as_badges(site: Path) -> None:
    data, q = fake_quality()
    for i in range(D_SAE):
        page = Page(site / "features" / f"{i}.html")
        badges = [a for t, a in page.tags if t == "span" and "bd" in a.get("class", "").split()]
        assert [a["class"] for a in badges] == [f"bd b-{key}" for bit, key, _, _ in FLAGS
                                                if q.flags[i] & bit]
        line = html_unescape(re.search(r"<p class=quality id=quality>(.*?)</p>", page.raw).group(1))
        assert f"encoder–decoder cosine {sig(float(data.latents.enc_dec_cos[i]))}" in line
        assert f"activation at BOS positions {pages_mod.percent(q.bos_share[i])}" in line
        assert f"at first positions {pages_mod.percent(q.first_share[i])}" in line
        assert f"on its top token {pages_mod.percent(q.top_token_share[i])}" in line
    bos = Page(site / "features" / "4.html").raw
    assert re.search(r'<span class="bd b-bos" title="83.1% of its activation is at BOS / '
                     r'document-boundary positions[^"]*">BOS 83.1%</span>', bos)
    single = Page(site / "features" / "7.html")
    badge = next(a for t, a in single.tags if t == "span" and a.get("class") == "bd b-single")
    token = pages_mod.PageBuilder(data, {}).top_token_labels(7, 1)[0]
    assert badge["title"] == f"100% of its activation is on the token “{token}”: at least 90%"
    assert "single-token 100%" in single.all_text
    dead = Page(site / "features" / f"{DEAD}.html").all_text
    assert "dead" in dead and "at first positions 0%" in dead and "on its top token n/a" in dead


def test_index_shows_the_sae_figures_and_flag_counts(site: Path) -> None:
    _, q = fake_quality()
    page = Page(site / "index.html")
    summary = html_unescape(re.search(r"<section id=summary>(.*?)</section>", page.raw,
                                      re.S).group(1))
    dense = int(((q.flags & DENSE) > 0).sum())
    for expected in (f"dense (density > 10%)<dd>{dense}", "mostly at BOS<dd>2",
                     "mostly at the first position<dd>1", "single-token (≥ 90% on one token)<dd>1",
                     "explained variance<dd>0.876", "<dd>2.5 / 2.75 / 7.5 nats",
                     "loss recovered<dd>95%", "over all 30 sequences (439 non-BOS positions, "
                     "409 next-token predictions"):
        assert expected in summary, expected


def test_index_table_has_quality_columns_and_a_flag_filter(site: Path) -> None:
    _, q = fake_quality()
    page = Page(site / "index.html")
    heads = re.findall(r"<th[^>]*>(?:<button type=button data-sort=(\w+)>)?([^<]*)",
                       page.raw.split("<table id=lt", 1)[1].split("</thead>")[0])
    assert [(k, label) for k, label in heads][-5:] == [("", "flags"), ("b", "BOS"), ("f", "1st"),
                                                        ("s", "top token"), ("c", "enc·dec")]
    box = page.find("div", id="lf")
    assert box and "hidden" in box[0]  # shown by the script, which runs the filter
    assert [int(a["data-flag"]) for a in page.find("select") if "data-flag" in a] == \
        [bit for bit, *_ in FLAGS]
    rows = page.raw.split("<tbody>", 2)[2].split("</tbody>")[0].split("<tr>")[1:]
    for i, row in enumerate(rows):
        assert re.findall(r'class="bd b-(\w+)"', row) == [key for bit, key, _, _ in FLAGS
                                                           if q.flags[i] & bit]


def test_flag_files_follow_every_sort_order(site: Path) -> None:
    """search/<key>/q.js: one digit per row of the key's file order, the row's flags."""
    manifest = table_manifest(site)
    column = manifest["cols"].index("q") + 1
    _, q = fake_quality()
    for key in manifest["sorts"]:
        got_key, digits = load_script_call(site / "search" / key / "q.js", "fbFlags")
        rows = table_order(site, key)
        assert got_key == key and len(digits) == D_SAE
        assert [B64.index(c) for c in digits] == [r[column] for r in rows] == \
            [int(q.flags[r[0]]) for r in rows]


def test_without_the_quality_columns_only_the_flags_remain(bare_site: Path) -> None:
    manifest = table_manifest(bare_site)
    assert manifest["cols"][-1] == "q" and not {"b", "f", "s", "c"} & set(manifest["sorts"])
    text = Page(bare_site / "index.html").all_text
    assert "explained variance" not in text and "mostly at BOS" not in text
    assert "dense (density > 10%)" in text
    feature = Page(bare_site / "features" / "0.html").raw
    assert "encoder–decoder" not in feature and "activation at BOS" not in feature


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


def test_search_index_finds_explanations_tokens_and_logits(site: Path) -> None:
    data = make_store()
    _, index = search_index(site)
    assert 0 in index["cats"][::2] and 5 in index["self"][::2]
    top_token = data.vocab[data.latents.top_token_ids[7][0]].decode("utf-8", "ignore")
    for term in terms_of(top_token):
        assert 7 in index[term][::2]
    logit = data.vocab[data.latents.logit_pos_ids[9][0]].decode("utf-8", "ignore")
    for term in terms_of(logit):
        assert 9 in index[term][::2]
    for postings in index.values():
        scores = postings[1::2]
        assert scores == sorted(scores, reverse=True)


def token_index(site: Path) -> tuple[int, dict[str, dict]]:
    return sharded(site, "t", "fbTokens")


@pytest.mark.parametrize("shard_bytes", [64 * 1024, 200])
def test_token_index_lists_the_latents_firing_most_on_each_token(tmp_path: Path,
                                                                 shard_bytes: int) -> None:
    """Every corpus token's key (normalised, stripped text) lists, from the store's
    TokenLatents, the latents with the largest total activation on any of its tokens, each
    once on its best token, with their mean activation and count."""
    from generator.search import TOKEN_LIST, token_key
    from generator.tokens import TokenText, display_text

    data = make_store()
    tl = data.token_latents
    assert tl is not None
    site = render_site(data, tmp_path / "site", quiet=True, shard_bytes=shard_bytes).out
    n, index = token_index(site)
    assert (n > 1) == (shard_bytes < 1000)
    assert f"data-token-shards={n} " in (site / "index.html").read_text()
    text = TokenText(data.vocab)
    want: dict[str, list[tuple[float, int, int, int]]] = {}
    for row, t in enumerate(tl.token.tolist()):
        key = token_key(data.vocab[t].decode("utf-8", "ignore"))
        for i, total, c in zip(tl.latent[row], tl.sum_act[row], tl.count[row], strict=True):
            if key and i >= 0:
                want.setdefault(key, []).append((-float(total), t, int(i), int(c)))
    assert set(index) == set(want) and "</script>" in index and " self".strip() in index
    assert not any(k != k.strip() or not k for k in index)  # whitespace-only tokens have none
    for key, entries in want.items():
        best: dict[int, tuple[float, int, int, int]] = {}
        for e in sorted(entries):
            best.setdefault(e[2], e)
        ranked = sorted(best.values())[:TOKEN_LIST]
        got = index[key]["l"]
        assert got[0::4] == [e[2] for e in ranked]
        assert [index[key]["v"][v] for v in got[1::4]] == [
            display_text(text.token(e[1])) for e in ranked]
        assert got[2::4] == [float(f"{-e[0] / e[3]:.3g}") for e in ranked]
        assert got[3::4] == [e[3] for e in ranked]


def test_token_index_store_round_trip(tmp_path: Path) -> None:
    from generator.store import read_store, write_store

    data = make_store()
    write_store(data, tmp_path / "store")
    back, want = read_store(tmp_path / "store").token_latents, data.token_latents
    assert back is not None and want is not None
    for name in ("token", "latent", "sum_act", "count"):
        assert getattr(back, name).dtype == getattr(want, name).dtype
        np.testing.assert_array_equal(getattr(back, name), getattr(want, name))
    write_store(make_store(optional=False), tmp_path / "bare")
    assert read_store(tmp_path / "bare").token_latents is None


def test_search_terms_and_hash_match_the_documented_rules() -> None:
    assert terms_of("Python self.attr (x) == ") == ["python", "self", "attr", "x", "=="]
    assert terms_of("Ｆｕｌｌ") == ["full"]  # NFKC
    assert fnv1a32(b"") == 0x811C9DC5 and fnv1a32(b"a") == 0xE40C292C


# ---------------------------------------------------------------------------------------------
# determinism, atomicity, purity


def test_rerender_is_byte_identical(tmp_path: Path) -> None:
    data = make_store()
    a = render_site(data, tmp_path / "a", EXPLANATIONS, quiet=True).out
    b = render_site(make_store(), tmp_path / "b", EXPLANATIONS, quiet=True).out
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_failure_mid_render_leaves_old_site_intact(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "site"
    render_site(make_store(), out, quiet=True)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = {"n": 0}
    original = pages_mod.PageBuilder.latent_page

    def explode(self: object, i: int) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return original(self, i)

    monkeypatch.setattr(pages_mod.PageBuilder, "latent_page", explode)
    with pytest.raises(RuntimeError, match="boom"):
        render_site(make_store(), out, EXPLANATIONS, quiet=True)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temp folder left behind


def test_refuses_to_replace_a_folder_that_is_not_a_site(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="not a feature-browser site"):
        render_site(make_store(), tmp_path, quiet=True)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_render_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from tests.fake_store import make_store\n"
        "from generator.render import render_site\n"
        f"render_site(make_store(), __import__('pathlib').Path({str(tmp_path / 's')!r}), "
        "quiet=True, site_url='https://example.org/sae/')\n"  # link cards drawn too
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'sae_lens', 'transformer_lens')]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_explanations_for_unknown_latents_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="latent 99"):
        render_site(make_store(), tmp_path / "s", {99: "x"}, quiet=True)


# ---------------------------------------------------------------------------------------------
# explanations files


def test_load_explanations_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"latent": 3, "explanation": " indentation "}\n\n'
                    '{"latent": 1, "explanation": "</script>"}\n', encoding="utf-8")
    assert load_explanations(path) == {3: "indentation", 1: "</script>"}


def test_load_explanations_neuronpedia_export(tmp_path: Path) -> None:
    records = [
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": "12", "description": "dogs",
         "explanationModelName": "gpt-4o-mini", "typeName": "oai_token-act-pair"},
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": 4, "description": "cats"},
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": "12", "description": "later"},
    ]
    listed = tmp_path / "np.json"
    listed.write_text(json.dumps(records), encoding="utf-8")
    assert load_explanations(listed) == {12: "dogs", 4: "cats"}
    lines = tmp_path / "np.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    assert load_explanations(lines) == {12: "dogs", 4: "cats"}


@pytest.mark.parametrize("content, message", [
    ("{not json\n", "is not a JSON object"),
    ('[{"index": "x", "description": "a"}]', "no valid latent id"),
    ('{"latent": 1}\n', "no explanation text"),
    ('{"latent": -1, "explanation": "a"}\n', "no valid latent id"),
    ("[1, 2]", "is not a JSON object"),
    ("[{", "not valid JSON"),
])
def test_load_explanations_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as err:
        load_explanations(path)
    assert "\n" not in str(err.value)


def test_load_explanations_missing_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_explanations(tmp_path / "nope.jsonl")
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"latent": 1, "explanation": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        load_explanations(bad)


# ---------------------------------------------------------------------------------------------
# size budget (DESIGN §5: 24,576 latents must fit GitHub Pages' 1 GB with room to spare)


def test_size_budget_at_default_settings(tmp_path: Path) -> None:
    data = make_scaled_store(d_sae=24, n_seqs=1000)
    assert data.meta.settings["k"] == 20 and data.meta.ctx == 128
    report = render_site(data, tmp_path / "s", {i: f"explanation {i}" for i in range(24)},
                         quiet=True)
    parts = report.bytes_by_part
    # the token index grows with the vocabulary, not with the latents
    token_files = list((report.out / "search").glob("t[0-9]*.js"))
    token_bytes = sum(f.stat().st_size for f in token_files)
    assert data.token_latents is not None and token_bytes > 0
    per_latent = (parts["features"] + parts["embed"] + parts["search"] - token_bytes) / report.latents
    # (the real demo store, 20 top + 10 x 5 interval samples with Δloss: ~27 KB a latent in all)
    assert per_latent < 24_000, parts
    seq_bytes_per_seq = parts["seqs"] / len(data.seq_ids)
    per_token = token_bytes / len(data.token_latents.token)
    assert per_token < 400, per_token  # 16 latents with mean and count, and the key
    # 24,576 latents over a 24,576 x 128 corpus with GPT-2's 50,257 tokens: pages + embed +
    # search + every sequence + a token index over the whole vocabulary
    projected = 24_576 * per_latent + 24_576 * seq_bytes_per_seq + 50_257 * per_token
    assert projected < 650e6, projected


def test_examples_sorted_differently_in_the_store_render_the_same(tmp_path: Path) -> None:
    data = make_store()
    order = np.random.default_rng(0).permutation(len(data.examples.seq))
    ex = data.examples
    shuffled = type(ex)(latent=ex.latent[order], kind=[ex.kind[k] for k in order],
                        interval=ex.interval[order], rank=ex.rank[order], seq=ex.seq[order],
                        acts=ex.acts[order], dloss=ex.dloss[order])
    a = render_site(data, tmp_path / "a", quiet=True).out
    b = render_site(type(data)(meta=data.meta, latents=data.latents, examples=shuffled,
                               seq_ids=data.seq_ids, seq_tokens=data.seq_tokens,
                               vocab=data.vocab), tmp_path / "b", quiet=True).out
    assert (a / "features" / "2.html").read_bytes() == (b / "features" / "2.html").read_bytes()


# ---------------------------------------------------------------------------------------------
# what a site ships: default and --compact; parallel rendering


@pytest.fixture(scope="module")
def scaled_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A default-settings store (k=20, 10 intervals x 5 samples) rendered both ways."""
    data = make_scaled_store(d_sae=8, n_seqs=400)
    root = tmp_path_factory.mktemp("showing")
    return {mode: render_site(data, root / mode, quiet=True, compact=mode == "compact").out
            for mode in ("default", "compact")}


def shown_codes(site: Path, i: int) -> list[tuple]:
    return examples_in(Page(site / "features" / f"{i}.html"))


def test_default_shows_every_top_example_and_two_samples_per_interval(
        scaled_sites: dict[str, Path]) -> None:
    site = scaled_sites["default"]
    page = Page(site / "features" / "0.html")
    top = re.search(r"<section id=top>(.*?)</section>", page.raw, re.S).group(1)
    intervals = re.search(r"<section id=intervals>(.*?)</section>", page.raw, re.S).group(1)
    assert top.count("<li id=ex-") == 20
    per_group = [g.count("<li id=ex-") for g in intervals.split("<h3 ")[1:]]
    assert max(per_group) == 2 and "2 of the 5 samples drawn per interval shown" in intervals
    assert len(shown_codes(site, 0)) == top.count("<li") + intervals.count("<li")
    assert (site / "embed" / "0.html").is_file()
    assert len(page.find("svg")) == 2


def test_compact_ships_what_it_says(scaled_sites: dict[str, Path]) -> None:
    site = scaled_sites["compact"]
    assert not (site / "embed").exists()
    page = Page(site / "features" / "0.html")
    top = re.search(r"<section id=top>(.*?)</section>", page.raw, re.S).group(1)
    intervals = re.search(r"<section id=intervals>(.*?)</section>", page.raw, re.S).group(1)
    assert top.count("<li id=ex-") == 10 and "The top 10 of 20." in top
    assert max(g.count("<li id=ex-") for g in intervals.split("<h3 ")[1:]) == 1
    assert page.find("article")[0]["data-embed"] == "0.html?embed"
    assert len(page.find("svg")) == 1  # no logit histogram
    logits = re.search(r"<section id=logits>(.*?)</section>", page.raw, re.S).group(1)
    assert logits.count("<tr>") == 10  # 5 promoted + 5 suppressed
    for n, (_, start, end, peak, _, _, _, dl) in enumerate(shown_codes(site, 0)):
        before, after = (6, 2) if n < 10 else (4, 1)  # top examples first, then samples
        assert (start, end) == (max(0, peak - before), min(128, peak + after + 1))
        assert sum(1 for p in dl if not start <= p < end) <= 4
    default = Page(scaled_sites["default"] / "features" / "0.html")
    assert len(page.raw) < 0.7 * len(default.raw)


@pytest.mark.parametrize("mode", ["default", "compact"])
def test_sequence_files_hold_exactly_the_shown_examples_sequences(
        scaled_sites: dict[str, Path], mode: str) -> None:
    site = scaled_sites[mode]
    shipped: set[int] = set()
    for path in (site / "seqs").glob("*.js"):
        if path.name != "t.js":
            k, seqs = load_script_call(path, "fbSeqs")
            assert all(int(s) // render_mod.SEQ_SHARD == k for s in seqs)
            shipped |= {int(s) for s in seqs}
    shown = {code[0] for i in range(8) for code in shown_codes(site, i)}
    assert shipped == shown


def test_parallel_render_is_byte_identical(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Latent pages and corpus pages (several chunks of each) alike."""
    from generator import promptpages
    from tests.fake_corpus import with_corpus

    monkeypatch.setattr(promptpages, "VIEW_CHUNK", 7)
    data = with_corpus(make_scaled_store(d_sae=24, n_seqs=300))
    one = render_site(data, tmp_path / "one", quiet=True, workers=1).out
    two = render_site(data, tmp_path / "two", quiet=True, workers=2, chunk=5).out
    assert len(list((two / "corpus").glob("*.html"))) > 3 * 7
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_parallel_render_ends_under_a_parent_sigterm_handler(tmp_path: Path) -> None:
    """Forked page workers inherit the parent's signal handlers (a build's SIGTERM clean-up, a
    test runner's). A handler that does not exit used to keep a worker alive through
    Pool.terminate, hanging the render for ever; it must finish, in a child with a deadline."""
    script = f"""
import signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
signal.signal(signal.SIGTERM, lambda *args: None)  # a handler that does not exit
from generator.render import render_site
from tests.fake_store import make_scaled_store
render_site(make_scaled_store(d_sae=24, n_seqs=300), {str(tmp_path / 'site')!r}, quiet=True,
            workers=2, chunk=5)
print("rendered")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rendered" in done.stdout
    assert len(list((tmp_path / "site" / "features").glob("*.html"))) == 24


def test_load_explanations_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "expl.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"latent": 3, "explanation": "indentation"}\n')
    assert load_explanations(path) == {3: "indentation"}


# ---------------------------------------------------------------------------------------------
# link cards: --site-url

SITE_URL = "https://example.org/sae"


@pytest.fixture(scope="module")
def linked_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full fake store (hostile vocabulary and explanations) rendered with a site URL."""
    out = tmp_path_factory.mktemp("linked") / "site"
    return render_site(make_store(), out, EXPLANATIONS, quiet=True, site_url=SITE_URL).out


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

    from generator.cards import Card, card_png, one_line, safe_text

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


def test_a_site_over_the_pages_limit_says_what_to_drop(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Over GitHub Pages' limit (here lowered to 100 KB), the render warns in one line with the
    largest parts and the options that apply to this site; under it, nothing is said."""
    import logging

    from tests.fake_corpus import with_corpus

    data = with_corpus(make_store())
    caplog.set_level(logging.WARNING, logger="generator.render")
    render_site(data, tmp_path / "under", quiet=True)
    assert not caplog.records
    monkeypatch.setattr(render_mod, "PAGES_LIMIT", 100_000)
    report = render_site(data, tmp_path / "over", quiet=True, site_url="https://u.github.io/r/")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "over GitHub Pages' 1 GB limit" in line
    assert f"{report.total_bytes / 1e9:.2f} GB" in line
    biggest = max(report.bytes_by_part, key=lambda k: report.bytes_by_part[k])
    assert f"largest: {biggest}/" in line
    for fix in ("--no-corpus-view drops corpus/", "leaving out --site-url drops cards/",
                "--compact ships less"):
        assert fix in line
    caplog.clear()
    render_site(data, tmp_path / "compact", quiet=True, compact=True)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "--no-corpus-view" not in line and "--compact" not in line and "cards/" not in line
    assert "host it elsewhere" in line
