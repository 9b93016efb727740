"""generator.site.views: the prompt view's and the corpus view's pages (structure, what the blob
holds, exact table ranks, hostile text escaped, links from the latent pages, pagination, the
Δloss taken from the shown examples)."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from generator.store.io import write_store
from tests.fake_corpus import with_corpus
from tests.fake_prompts import HOSTILE_PROMPTS, with_prompts
from tests.fake_store import EXPLANATIONS, make_store
from tests.helpers import blob_of, r3


@pytest.fixture(scope="module")
def prompt_site(tmp_path_factory) -> Path:
    from generator.site.render import render_site

    out = tmp_path_factory.mktemp("prompts") / "site"
    return render_site(with_prompts(make_store()), out, EXPLANATIONS, quiet=True).out


def start_tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    from html.parser import HTMLParser

    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, attrs))

    Parser().feed(page)
    return tags


def test_a_page_per_prompt_and_an_index_linked_from_the_site_index(prompt_site):
    prompts = with_prompts(make_store()).prompts
    assert prompts is not None
    names = sorted(p.name for p in (prompt_site / "prompts").iterdir())
    assert names == sorted([f"{n}.html" for n in range(len(prompts))] + ["index.html"])
    index = (prompt_site / "index.html").read_text()
    assert 'href="prompts/index.html"' in index and "4 prompts" in index
    listing = (prompt_site / "prompts" / "index.html").read_text()
    for n in range(len(prompts)):
        assert f'href="{n}.html"' in listing
    assert "(cut)" in listing  # prompt 2 was truncated
    page = (prompt_site / "prompts" / "2.html").read_text()
    assert "cut to the build's context" in page
    assert 'href="../index.html"' in page and 'href="index.html">all prompts' in page


def test_tokens_and_blob_match_the_store(prompt_site):
    from generator.site.views import PROMPT_TOP

    data = with_prompts(make_store())
    p = data.prompts
    assert p is not None
    for n in range(len(p)):
        page = (prompt_site / "prompts" / f"{n}.html").read_text()
        strip = re.search(r"<div id=ptoks[^>]*>(.*?)</div>", page, re.S).group(1)
        tags = re.findall(r"<i( class=bos)?>", strip)
        tokens = p.tokens[n]
        assert len(tags) == len(tokens)  # one element per position
        assert [bool(t) for t in tags] == (tokens == data.meta.bos_id).tolist()
        blob = blob_of(page)
        assert len(blob["t"]) == len(tokens) and len(blob["l"]) == len(tokens)
        assert blob["l"][-1] is None
        e = np.flatnonzero(p.prompt == n)
        for pos in range(len(tokens)):
            here = e[p.pos[e] == pos]
            want = sorted(here, key=lambda j: (-p.act[j], p.latent[j]))[:PROMPT_TOP]
            got = blob["t"][pos]
            assert [x[0] for x in got] == [int(p.latent[j]) for j in want]
            assert [x[1] for x in got] == [r3(p.act[j]) for j in want]
            assert [x[2] for x in got] == [None if np.isnan(p.dloss[j]) else r3(p.dloss[j])
                                           for j in want]
            if tokens[pos] == data.meta.bos_id:
                assert got == []
        # every named latent has a label and the corpus max; its activations are the store's
        named = {x[0] for slot in blob["t"] for x in slot}
        assert named <= {int(k) for k in blob["n"]}
        for key, values in blob["a"].items():
            j = e[p.latent[e] == int(key)]
            assert values[0::2] == p.pos[j].tolist()
            assert values[1::2] == [r3(a) for a in p.act[j]]
            assert blob["n"][key][1] == r3(data.latents.max_act[int(key)])


def test_the_latent_table_ranks_are_exact(prompt_site, tmp_path, monkeypatch):
    """With PROMPT_LIST 3: the table holds the top 3 by each order; the ranks in the blob sort
    them exactly (ties to the lower id); only the top 3 by max activation are shown."""
    from generator.site import views
    from generator.site.render import render_site

    monkeypatch.setattr(views, "PROMPT_VIEW", replace(views.PROMPT_VIEW, k=3))
    data = with_prompts(make_store())
    p = data.prompts
    assert p is not None
    out = render_site(data, tmp_path / "site", quiet=True).out
    for n in range(len(p)):
        page = (out / "prompts" / f"{n}.html").read_text()
        blob = blob_of(page)
        rows = re.findall(r"<tr data-l=(\d+)( hidden)?>", page)
        ids = [int(r[0]) for r in rows]
        s = np.flatnonzero(p.s_prompt == n)
        keys = [p.s_max_act[s], p.s_sum_act[s], p.s_sum_abs_dloss[s]]
        want_sets = set()
        for k, key in enumerate(keys):
            order = sorted(range(len(s)), key=lambda j, key=key: (-float(key[j]), p.s_latent[s][j]))
            top = [int(p.s_latent[s][j]) for j in order]
            want_sets |= set(top[:3])
            by_rank = [i for _, i in sorted(zip([r[k] for r in blob["r"]], ids, strict=True))]
            assert by_rank[:3] == top[:3], (n, k)
            if k == 0:
                assert ids[:3] == top[:3]
                assert [bool(r[1]) for r in rows] == [False] * 3 + [True] * (len(rows) - 3)
        assert set(ids) == want_sets and blob["k"] == 3
        assert f"of the {len(s)} active on it" in page


def test_hostile_prompts_are_escaped(prompt_site):
    pages = [(prompt_site / "prompts" / f"{n}.html").read_text()
             for n in range(len(HOSTILE_PROMPTS))]
    listing = (prompt_site / "prompts" / "index.html").read_text()
    for page in [*pages, listing]:
        assert "<script>alert" not in page and "<img" not in page
        assert "\u202e" not in page and "\x00" not in page  # shown as escapes, never raw
        # the only script elements: the data blob and the two site scripts
        assert len(re.findall(r"<script", page)) == (3 if page is not listing else 1)
        tags = start_tags(page)  # what a browser's parser makes of the page
        assert not [t for t in tags if t[0] in ("img", "iframe", "object", "embed")]
        assert not [t for t in tags for name, _ in t[1] if name.startswith("on")]
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    assert "<b>\\u202e</b>evil" in listing and "<b>\\x00</b>" in listing
    # in the data blob, markup characters are escaped for a script context
    raw = re.search(r"id=fb-prompt>(.*?)</script>", pages[0], re.S).group(1)
    assert "<" not in raw and ">" not in raw and "&" not in raw
    title = re.search(r"<title>(.*?)</title>", pages[2]).group(1)
    assert html.unescape(title).startswith("Prompt 2: \\u202eevil RTL override")


def test_no_prompt_pages_without_prompts(site):
    assert not (site / "prompts").exists()
    assert "prompts/index.html" not in (site / "index.html").read_text()


def test_prompt_pages_carry_their_address_only_with_a_site_url(prompt_site, tmp_path):
    from generator.site.render import render_site

    page = (prompt_site / "prompts" / "1.html").read_text()
    assert "canonical" not in page and "og:url" not in page and "https://" not in page
    out = render_site(with_prompts(make_store()), tmp_path / "site", quiet=True,
                      site_url="https://u.github.io/repo").out
    for path in ("prompts/1.html", "prompts/index.html"):
        tags = start_tags((out / path).read_text())
        canonical = [dict(a)["href"] for t, a in tags if t == "link" and ("rel", "canonical") in a]
        assert canonical == [f"https://u.github.io/repo/{path}"]


def test_dloss_comes_from_the_examples_of_the_same_sequence_and_latent():
    from generator.site.views import as_prompts

    data = with_corpus(make_store())
    view, ex = data.corpus, data.examples
    assert view is not None and ex.dloss is not None
    p = as_prompts(data, view)
    pairs: dict[tuple[int, int], int] = {}  # the first example row of each pair (a top example)
    for j, (s, i) in enumerate(zip(ex.seq.tolist(), ex.latent.tolist(), strict=True)):
        pairs.setdefault((s, i), j)
    found = 0
    for e in range(len(view.row)):
        j = pairs.get((int(data.seq_ids[view.row[e]]), int(view.latent[e])))
        if j is None:
            assert np.isnan(p.dloss[e])
        else:
            np.testing.assert_array_equal(p.dloss[e], ex.dloss[j][view.pos[e]])
            found += 1
    for e in range(len(view.s_row)):
        j = pairs.get((int(data.seq_ids[view.s_row[e]]), int(view.s_latent[e])))
        want = np.nan if j is None else np.nansum(np.abs(ex.dloss[j].astype(np.float64)))
        np.testing.assert_allclose(p.s_sum_abs_dloss[e], want)
    assert found > 20 and np.isnan(p.dloss).sum() > 20
    # without ablation, no Δloss at all
    plain = replace(data, examples=replace(ex, dloss=None))
    assert np.isnan(as_prompts(plain, view).dloss).all()


@pytest.fixture(scope="module")
def corpus_site(tmp_path_factory) -> Path:
    from generator.site.render import render_site

    out = tmp_path_factory.mktemp("corpus") / "site"
    return render_site(with_corpus(make_store()), out, EXPLANATIONS, quiet=True).out


def test_a_page_per_kept_sequence_and_an_index(corpus_site):
    data = make_store()
    kept = data.seq_ids.tolist()
    assert sorted(int(p.stem) for p in (corpus_site / "corpus").glob("[0-9]*.html")) == kept
    index = (corpus_site / "corpus" / "index.html").read_text()
    assert re.findall(r'<tr><td><a href="(\d+)\.html">', index) == [str(s) for s in kept]
    site_index = (corpus_site / "index.html").read_text()
    assert 'href="corpus/index.html"' in site_index and f">{len(kept)} corpus sequences<" in site_index
    # prev / next follow the kept sequences, the index is one click away
    page = (corpus_site / "corpus" / f"{kept[1]}.html").read_text()
    assert f'rel=prev href="{kept[0]}.html"' in page and f'rel=next href="{kept[2]}.html"' in page
    assert 'href="index.html">all sequences<' in page
    # latent pages link their examples to it (static/examples.js adds the link to an expanded example)
    assert " data-corpus=0>" in (corpus_site / "features" / "0.html").read_text()


def test_blob_and_table_hold_the_store(corpus_site):
    from generator.compute.corpusview import CORPUS_LIST, CORPUS_TOP
    from generator.site.views import as_prompts

    data = with_corpus(make_store())
    view = data.corpus
    assert view is not None
    p = as_prompts(data, view)
    for r, seq in enumerate(data.seq_ids.tolist()):
        page = (corpus_site / "corpus" / f"{seq}.html").read_text()
        blob = blob_of(page)
        # the hostile vocabulary (</script>, <img onerror>) stays text
        assert page.count("<script") == 3 and "<img" not in page
        if 1 in data.seq_tokens[r]:
            assert "&lt;/script&gt;" in page
        e = np.flatnonzero(view.row == r)
        for pos in range(data.seq_tokens.shape[1]):
            here = sorted(e[view.pos[e] == pos], key=lambda j: (-view.act[j], view.latent[j]))
            want = [[int(view.latent[j]), r3(view.act[j])] +
                    ([] if np.isnan(p.dloss[j]) else [r3(p.dloss[j])])
                    for j in here[:CORPUS_TOP]]
            assert blob["t"][pos] == want
        # the table: its latents, the colouring data of each, the count of active latents
        s = np.flatnonzero(view.s_row == r)
        rows = re.findall(r"<tr data-l=(\d+)( hidden)?>", page)
        assert sorted(int(x) for x, _ in rows) == view.s_latent[s].tolist()
        assert sum(not h for _, h in rows) == min(CORPUS_LIST, len(s))
        shown = sorted({int(i) for i in data.examples.latent[data.examples.seq == seq]})
        assert sorted(int(x) for x in blob["a"]) == sorted(set(view.s_latent[s].tolist()) | set(shown))
        for key in map(str, view.s_latent[s].tolist()):  # the table's, from the corpus view
            j = e[view.latent[e] == int(key)]
            assert blob["a"][key][0::2] == view.pos[j].tolist()
        assert f"{view.n_latents[r]} latents active" in page
        assert len(blob["r"][0]) == 2 and blob["k"] == CORPUS_LIST  # max and total only
        known = np.isfinite(p.s_sum_abs_dloss[view.s_row == r]).any()
        assert "data-sort=2" not in page
        assert ("<th class=num>total |Δloss|" in page) == known
        # the latents whose page shows this sequence (the fake store's pages show every example)
        links = re.search(r"<p class=note id=shown>(.*?)</p>", page, re.S).group(1)
        assert [int(x) for x in re.findall(r"#(\d+)</a>", links)] == shown[:12]
        # ...whose activations (from their example, unless the table has them) and Δloss at
        # their active positions are on the page, so a link from their page can light them
        table = set(view.s_latent[s].tolist())
        assert set(blob["x"]) == {str(i) for i in shown} and set(shown) <= {int(k) for k in blob["n"]}
        for i in shown:
            j = int(np.flatnonzero((data.examples.seq == seq) & (data.examples.latent == i))[0])
            at = np.flatnonzero(data.examples.acts[j] > 0)
            dl = data.examples.dloss[j]
            assert blob["x"][str(i)] == [v for q in at.tolist()
                                         for v in (q, r3(dl[q]) if np.isfinite(dl[q]) else None)]
            if i not in table:
                assert blob["a"][str(i)] == [v for q in at.tolist()
                                             for v in (q, r3(data.examples.acts[j][q]))]


def test_pages_only_for_the_sequences_the_site_shows(tmp_path, monkeypatch):
    """With one sample shown per interval (of the 2 stored), the sequences that only unshown
    samples point to get no page (no page would link to them), "shown on" names only the
    latents whose page shows the sequence, and Δloss comes only from shown examples (so that
    every number can be found on a latent page)."""
    from generator.site import render
    from generator.site.builder import shown_mask
    from generator.site.render import render_site

    showing = replace(render.DEFAULT_SHOWING, per_interval=1)
    monkeypatch.setattr(render, "DEFAULT_SHOWING", showing)
    data = with_corpus(make_store())
    ex = data.examples
    shown = shown_mask(data, showing)
    visible = np.unique(ex.seq[shown])
    assert 0 < len(visible) < len(data.seq_ids)  # some sequences only unshown samples keep
    out = render_site(data, tmp_path / "site", quiet=True).out
    pages = sorted(int(p.stem) for p in (out / "corpus").glob("[0-9]*.html"))
    assert pages == visible.tolist()
    assert f">{len(visible)} corpus sequences<" in (out / "index.html").read_text()
    for seq in visible.tolist():
        page = (out / "corpus" / f"{seq}.html").read_text()
        links = re.search(r"<p class=note id=shown>(.*?)</p>", page, re.S).group(1)
        want = sorted({int(i) for i in ex.latent[shown & (ex.seq == seq)]})
        assert [int(x) for x in re.findall(r"#(\d+)</a>", links)] == want[:12]
    # an unshown sample's Δloss is not on the page (no latent page shows where it came from)
    pairs = set(zip(ex.seq[shown].tolist(), ex.latent[shown].tolist(), strict=True))
    hidden = [j for j in np.flatnonzero(~shown & np.isin(ex.seq, visible)).tolist()
              if (int(ex.seq[j]), int(ex.latent[j])) not in pairs]
    assert hidden
    checked = 0
    for j in hidden:
        blob = blob_of((out / "corpus" / f"{int(ex.seq[j])}.html").read_text())
        entries = [e for top in blob["t"] for e in top if e[0] == int(ex.latent[j])]
        assert all(len(e) == 2 for e in entries) and str(int(ex.latent[j])) not in blob["x"]
        checked += len(entries)
    assert checked


def test_no_corpus_pages_when_compact_or_absent(tmp_path):
    from generator.cli import main
    from generator.site.render import render_site

    compact = render_site(with_corpus(make_store()), tmp_path / "c", quiet=True,
                          compact=True).out
    plain = render_site(make_store(), tmp_path / "p", quiet=True).out
    write_store(with_corpus(make_store()), tmp_path / "store")
    assert main(["render", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "n"),
                 "--no-corpus-view", "--quiet"]) == 0
    # asked for explicitly, --compact keeps it
    assert main(["render", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "cc"),
                 "--compact", "--corpus-view", "--quiet"]) == 0
    assert list((tmp_path / "cc" / "corpus").glob("[0-9]*.html"))
    for out in (compact, plain, tmp_path / "n"):
        assert not (out / "corpus").exists()
        assert "corpus/index.html" not in (out / "index.html").read_text()
        assert "data-corpus" not in (out / "features" / "0.html").read_text()


def test_without_ablation_the_pages_say_so_and_drop_the_dloss_column(tmp_path):
    from generator.site.render import render_site

    data = with_corpus(make_store(optional=False))
    assert data.examples.dloss is None and not data.meta.has_ablation
    out = render_site(data, tmp_path / "site", quiet=True).out
    for path in list((out / "corpus").glob("[0-9]*.html"))[:5]:
        page = path.read_text()
        assert "This build ran without ablation" in page and "total |Δloss|" not in page
        assert all(len(e) == 2 for top in blob_of(page)["t"] for e in top)


def test_the_sequence_list_is_paginated(tmp_path, monkeypatch):
    """LIST_PAGE rows a list page: index.html, index-2.html, ... hold every sequence once, in
    order, each linking its neighbours."""
    from generator.site import views
    from generator.site.render import render_site

    monkeypatch.setattr(views, "LIST_PAGE", 7)
    data = with_corpus(make_store())
    out = render_site(data, tmp_path / "site", quiet=True).out
    n_pages = -(-len(data.seq_ids) // 7)
    assert n_pages > 2
    listed = []
    for page in range(1, n_pages + 1):
        name = "index.html" if page == 1 else f"index-{page}.html"
        html = (out / "corpus" / name).read_text()
        rows = re.findall(r'<tr><td><a href="(\d+)\.html">', html)
        assert len(rows) == (7 if page < n_pages else len(data.seq_ids) - 7 * (n_pages - 1))
        listed += [int(r) for r in rows]
        assert f"page {page} of {n_pages}" in html
        prev = "index.html" if page == 2 else f"index-{page - 1}.html"
        assert (f'rel=prev href="{prev}"' in html) == (page > 1)
        assert (f'rel=next href="index-{page + 1}.html"' in html) == (page < n_pages)
    assert listed == data.seq_ids.tolist()
    assert not (out / "corpus" / f"index-{n_pages + 1}.html").exists()
    assert f"({len(data.seq_ids)})" in (out / "corpus" / "index-2.html").read_text()
