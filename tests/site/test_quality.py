"""generator.site.quality: every flag raised by the fake store, shown as badges on latent pages,
counted on the index, filterable and sortable in its table."""

from __future__ import annotations

import re
from html import unescape as html_unescape
from pathlib import Path

from generator.site import builder, charts
from generator.site.charts import sig
from generator.site.quality import DENSE, FLAGS, latent_quality
from generator.site.search import B64
from tests.fake_store import make_store
from tests.sitefiles import D_SAE, DEAD, Page, load_script_call, table_manifest, table_order


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
        assert f"activation at BOS positions {charts.percent(q.bos_share[i])}" in line
        assert f"at first positions {charts.percent(q.first_share[i])}" in line
        assert f"on its top token {charts.percent(q.top_token_share[i])}" in line
    bos = Page(site / "features" / "4.html").raw
    assert re.search(r'<span class="bd b-bos" title="83.1% of its activation is at BOS / '
                     r'document-boundary positions[^"]*">BOS 83.1%</span>', bos)
    single = Page(site / "features" / "7.html")
    badge = next(a for t, a in single.tags if t == "span" and a.get("class") == "bd b-single")
    token = builder.PageBuilder(data, {}).top_token_labels(7, 1)[0]
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
