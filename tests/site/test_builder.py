"""generator.site.builder: what latent pages and the index show, as rendered HTML (sections,
examples, BOS markers, intervals, dead latents, embeds, link previews, neighbours), and the
escaping of hostile corpus text everywhere."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from generator.site import codec, contexts
from generator.site.charts import (
    LEVELS,
    activation_chart,
    logit_chart,
    sig,
)
from generator.site.render import render_site
from tests.fake_store import EXPLANATIONS, make_store
from tests.sitefiles import D_SAE, DEAD, Page, examples_in, html_files, load_script_call


def test_feature_page_sections(site: Path) -> None:
    page = Page(site / "features" / "0.html")
    ids = page.ids()
    for section in ("acts", "logits", "top", "intervals", "ablation", "toptokens", "neighbours",
                    "legend", "fb-data"):
        assert section in ids, section
    assert page.find("h1") and "Latent 0" in page.all_text
    assert EXPLANATIONS[0] in page.all_text
    assert len(page.find("svg")) == 2  # activation + logit histograms, inline
    assert page.find("article")[0]["data-embed"] == "../embed/0.html"  # static/app.js adds the buttons
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
        assert all(1 <= v <= codec.ACT_LEVELS for v in acts.values())
        assert all(start <= p < end for p in acts) and not any(start <= p < end for p in colours)
        assert all(1 <= v <= LEVELS for v in colours.values())
        outside = [p for p in dl if not start <= p < end]
        assert len(outside) <= codec.DLOSS_OUTSIDE
        assert all(abs(v) >= max(10, cut) for p, v in dl.items() if not start <= p < end)


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
            assert li.count(contexts.BOS_HTML) == len([p for p in bos if start <= p < end])
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
            displays = [symbols[x] for x in codec.read_varints(code)]
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
    `Bins.tip`, which static/charts.js reproduces (tests/site/test_browser.py compares them)."""
    lat = make_store().latents
    page = Page(site / "features" / "0.html")
    act, logit = page.find("svg")
    n_bins, n_int = lat.hist.shape[1], lat.interval_counts.shape[1]
    assert codec.read_varints(act["data-c"]) == lat.hist[0].tolist()
    f32 = np.float32  # the range ships as float32, what a real store holds
    assert [f32(x) for x in act["data-x"].split()] == [0, f32(lat.max_act[0])]
    assert act["data-t"] == "token|activation|(]]" and act["data-i"] == str(n_int)
    assert codec.read_varints(logit["data-c"]) == lat.logit_hist[0].tolist()
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
    assert sum(codec.read_varints(density["data-c"])) == int((lat.n_active > 0).sum())


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
    assert manifest["n"] == D_SAE and manifest["rows"] == contexts.TABLE_PAGE
