"""The corpus view: its numbers against a brute force on the tiny real model and against the
engine's examples on the same sequences, the store round trip, the Δloss taken from the
examples, and the pages (structure, what the blob holds, links from the latent pages)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from generator.store import read_store, write_store
from tests.fake_corpus import with_corpus
from tests.fake_store import EXPLANATIONS, make_store
from tests.helpers import CASES, blob_of, r3
from tests.reference import reference_corpus_view

# ---------------------------------------------------------------------------------------------
# compute


@pytest.fixture(scope="module")
def model():
    from tests.helpers import tiny_model

    return tiny_model()


def brute_force(model, sae, hook: str, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense activations [n, ctx, d_sae] (the SAE's encode of the cached hook activation, zero
    at BOS) and the clean loss [n, ctx] (NaN at the last position and before a BOS), from one
    plain forward pass of the whole model per sequence."""
    import torch

    from tests.helpers import BOS

    acts, losses = [], []
    with torch.no_grad():
        for row in tokens:
            t = torch.from_numpy(row[None]).long()
            _, cache = model.run_with_cache(t, names_filter=hook)
            a = sae.encode(cache[hook][0]).float()
            a[torch.from_numpy(row == BOS)] = 0
            acts.append(a.numpy())
            loss = model(t, return_type="loss", loss_per_token=True)[0].numpy()
            loss = np.where(row[1:] != BOS, loss, np.nan)
            losses.append(np.append(loss, np.nan))
    return np.stack(acts), np.stack(losses)


def compute(model, kind: str, hook: str, tokens: np.ndarray, batch_size: int = 4,
            encode_rows: int = 1024):
    from generator.activations import HookedSAE
    from generator.corpusview import compute_corpus_view
    from generator.models import parse_hook
    from tests.helpers import BOS, tiny_sae

    sae = tiny_sae(kind, hook)
    hooked = HookedSAE(model, sae, parse_hook(hook))
    return sae, hooked, compute_corpus_view(hooked, tokens, BOS, batch_size, encode_rows)


def assert_views_equal(got, want, exact_floats: bool = False) -> None:
    for name in ("n_latents", "row", "pos", "latent", "s_row", "s_latent", "s_n_active"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist(), name
    for name in ("act", "s_max_act", "s_sum_act", "loss"):
        if exact_floats:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        else:
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-4,
                                       atol=1e-5)


@pytest.mark.parametrize("kind, hook", CASES)
def test_corpus_view_equals_brute_force(model, kind, hook, monkeypatch):
    """Small list sizes (3 per order, 2 per token), so that the 24-latent tiny SAE has more
    active latents than the table and than a token's list."""
    from generator import corpusview
    from tests.helpers import tiny_tokens

    monkeypatch.setattr(corpusview, "CORPUS_LIST", 3)
    monkeypatch.setattr(corpusview, "CORPUS_TOP", 2)
    tokens = tiny_tokens()
    sae, _, got = compute(model, kind, hook, tokens)
    acts, loss = brute_force(model, sae, hook, tokens)
    want = reference_corpus_view(acts, loss, top=2, k=3)
    assert_views_equal(got, want)
    assert (got.n_latents > 3).any() and len(got.row) > len(tokens) * 2  # selection happened
    assert len(got.row) < int((acts > 0).sum())


def test_corpus_view_does_not_depend_on_batching(model):
    from tests.helpers import tiny_tokens

    tokens = tiny_tokens()
    _, _, a = compute(model, "standard", "blocks.1.hook_resid_pre", tokens)
    _, _, b = compute(model, "standard", "blocks.1.hook_resid_pre", tokens, batch_size=3,
                      encode_rows=5)
    assert_views_equal(a, b)


@pytest.mark.parametrize("kind, hook", CASES[:2])
def test_corpus_view_equals_the_engines_examples(model, kind, hook):
    """On the kept sequences of a real engine run: every table latent's activations are its
    example's at every position, and every kept entry of an example latent is its example's."""
    from generator.engine import Engine, EngineSettings
    from tests.helpers import BOS, tiny_tokens

    tokens = tiny_tokens()
    sae, hooked, _ = compute(model, kind, hook, tokens[:1])
    engine = Engine(hooked, tokens, BOS, EngineSettings(k=3, m=2, batch_size=4, quiet=True))
    p1 = engine.pass1(np.arange(len(tokens)))
    ex = engine.examples(p1, engine.pass2(p1.max_act)).examples
    kept = np.unique(ex.seq)
    _, _, view = compute(model, kind, hook, tokens[kept])
    checked = 0
    for j in range(len(ex.seq)):
        r, i = int(np.searchsorted(kept, ex.seq[j])), int(ex.latent[j])
        e = (view.row == r) & (view.latent == i)
        np.testing.assert_allclose(view.act[e], ex.acts[j][view.pos[e]], rtol=1e-5, atol=1e-6)
        if i in view.s_latent[view.s_row == r]:
            acts = np.zeros(tokens.shape[1], np.float32)
            acts[view.pos[e]] = view.act[e]
            np.testing.assert_allclose(acts, ex.acts[j], rtol=1e-5, atol=1e-6)
            checked += 1
    assert checked > 10


def test_store_round_trip(tmp_path):
    data = with_corpus(make_store())
    write_store(data, tmp_path / "store")
    back = read_store(tmp_path / "store").corpus
    assert back is not None and data.corpus is not None
    for name in ("loss", "n_latents", "row", "pos", "latent", "act", "s_row", "s_latent",
                 "s_n_active", "s_max_act", "s_sum_act"):
        got, want = getattr(back, name), getattr(data.corpus, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want)
    write_store(make_store(), tmp_path / "plain")  # a store without it has none of the files
    assert read_store(tmp_path / "plain").corpus is None
    assert not list((tmp_path / "plain").glob("corpus*"))


def test_a_store_whose_corpus_view_lists_other_sequences_is_refused(tmp_path):
    import pyarrow.parquet as pq

    from generator.errors import UserError

    write_store(with_corpus(make_store()), tmp_path / "store")
    path = tmp_path / "store" / "corpus_seqs.parquet"
    table = pq.read_table(path)
    seq = table.column("seq").to_numpy().copy()
    seq[[0, 1]] = seq[[1, 0]]
    pq.write_table(table.set_column(0, "seq", [seq]), path)
    with pytest.raises(UserError, match="damaged .corpus_seqs.parquet does not list"):
        read_store(tmp_path / "store")


def test_dloss_comes_from_the_examples_of_the_same_sequence_and_latent():
    from generator.promptpages import as_prompts

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


# ---------------------------------------------------------------------------------------------
# pages


@pytest.fixture(scope="module")
def corpus_site(tmp_path_factory) -> Path:
    from generator.render import render_site

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
    # latent pages link their examples to it (static/app.js adds the link to an expanded example)
    assert " data-corpus=0>" in (corpus_site / "features" / "0.html").read_text()


def test_blob_and_table_hold_the_store(corpus_site):
    from generator.corpusview import CORPUS_LIST, CORPUS_TOP
    from generator.promptpages import as_prompts

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
    from generator import render
    from generator.pages import shown_mask
    from generator.render import render_site

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
    from generator.render import render_site

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
    from generator.render import render_site

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
    from generator import promptpages
    from generator.render import render_site

    monkeypatch.setattr(promptpages, "LIST_PAGE", 7)
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
