"""generator.site.search: the index table's files (every sort order, pages), the term index and
the token index against the store, and the documented term and hash rules."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from generator.site.quality import FLAGS
from generator.site.render import render_site
from generator.site.search import (
    MAX_POSTINGS,
    Postings,
    SearchIndex,
    fnv1a32,
    rank_postings,
    terms_of,
)
from generator.store.schema import EXAMPLE_TOP, StoreData
from tests.fake_store import EXPLANATIONS, make_store
from tests.sitefiles import D_SAE, DEAD, Page, search_index, table_manifest, table_order, token_index


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


@pytest.mark.parametrize("shard_bytes", [64 * 1024, 200])
def test_token_index_lists_the_latents_firing_most_on_each_token(tmp_path: Path,
                                                                 shard_bytes: int) -> None:
    """Every corpus token's key (normalised, stripped text) lists, from the store's
    TokenLatents, the latents with the largest total activation on any of its tokens, each
    once on its best token, with their mean activation and count."""
    from generator.site.search import TOKEN_LIST, token_key
    from generator.site.tokens import TokenText, display_text

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


def reference_terms(data: StoreData, explanations: dict[int, str]) -> dict[str, list[int]]:
    """The term index by its documented rules (generator/site/search.py), one position at a
    time: {term: [latent, score, ...]} ranked and cut."""
    lat, ex = data.latents, data.examples
    best: dict[str, dict[int, int]] = defaultdict(dict)

    def add(i: int, text: str, weight: float) -> None:
        for term in terms_of(text):
            score = max(1, round(1000 * min(weight, 1.0)))
            best[term][i] = max(best[term].get(i, 0), score)

    def plain(t: int) -> str:
        return data.vocab[t].decode("utf-8", "ignore")  # undecodable bytes are no term

    for i in range(lat.d_sae):
        if explanations.get(i):
            add(i, explanations[i], 1.0)
        for t, s in zip(lat.top_token_ids[i], lat.top_token_sums[i], strict=True):
            if t >= 0:
                add(i, plain(int(t)), 0.4 + 0.6 * float(s) / max(float(lat.sum_act[i]), 1e-30))
        for rank, t in enumerate(lat.logit_pos_ids[i]):
            if t >= 0:
                add(i, plain(int(t)), 0.5 - 0.03 * rank)
        mass: dict[str, float] = defaultdict(float)
        for row in np.flatnonzero((ex.latent == i) & (np.asarray(ex.kind) == EXAMPLE_TOP)):
            tokens = data.seq_tokens[int(np.searchsorted(data.seq_ids, ex.seq[row]))]
            for p, a in enumerate(np.asarray(ex.acts[row], dtype=np.float64)):
                for term in terms_of(plain(int(tokens[p]))) if a > 0 else []:
                    mass[term] += a
        total = sum(mass.values()) or 1.0
        for term, m in mass.items():
            score = max(1, round(1000 * (0.2 + 0.3 * (m / total))))
            best[term][i] = max(best[term].get(i, 0), score)
    return {term: [x for i, s in sorted(slot.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_POSTINGS]
                   for x in (i, s)] for term, slot in best.items()}


def test_term_index_equals_its_brute_force(site: Path) -> None:
    """Every term, latent and score of the written index, against the rules applied one
    example position at a time (the writer sums them per token with array operations)."""
    assert search_index(site)[1] == reference_terms(make_store(), EXPLANATIONS)


def test_merged_chunks_keep_each_terms_best_postings() -> None:
    """Chunks of disjoint latents merged in any order, cut as they come, give the index of all
    of them ranked at once; a (term, latent) pair keeps its best source's score."""
    rng = np.random.default_rng(0)
    terms = ["a", "b", "c", "d", "é"]
    chunks, everything = [], []
    for lo in range(0, 3000, 64):
        n = 64 * 6
        triples = (rng.integers(0, len(terms), n), rng.integers(lo, lo + 64, n),
                   rng.choice([0.2, 0.5, 2.0, rng.random()], n))  # repeats and ties on purpose
        order = rng.permutation(len(terms))  # each chunk numbers its terms its own way
        chunks.append(rank_postings([terms[k] for k in order], np.argsort(order)[triples[0]],
                                    *triples[1:]))
        everything.append(triples)
    whole = rank_postings(terms, *(np.concatenate(col) for col in zip(*everything, strict=True)))
    merged = SearchIndex()
    merged.COMPACT_FROM = 1000
    for k in rng.permutation(len(chunks)):
        merged.merge(chunks[k])
    assert merged.pending <= 2 * max(1000, merged.kept)
    reference: dict[str, dict[int, int]] = defaultdict(dict)
    for term, latent, weight in zip(*(np.concatenate(col) for col in zip(*everything, strict=True)),
                                    strict=True):
        score = max(1, round(1000 * min(float(weight), 1.0)))
        slot = reference[terms[term]]
        slot[int(latent)] = max(slot.get(int(latent), 0), score)
    expected = {t: sorted(slot.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_POSTINGS]
                for t, slot in reference.items()}
    assert merged.kept > 0 and merged.ranked() == expected
    assert as_dict(whole) == expected
    assert all(len(p) == MAX_POSTINGS for p in expected.values())


def as_dict(postings: Postings) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for t, latent, score in zip(postings.term.tolist(), postings.latent.tolist(),
                                postings.score.tolist(), strict=True):
        out[postings.terms[t]].append((latent, score))
    return dict(out)


def test_ranking_cuts_a_chunk_and_survives_odd_input() -> None:
    """One chunk of more than MAX_POSTINGS latents on a term is cut to the best; latent ids too
    large for the one-key sort take the lexsort and rank the same; a NaN weight scores 1; an
    empty chunk and an empty index write nothing but empty shards."""
    n = 3 * MAX_POSTINGS
    weight = (np.arange(n) % 7) / 7
    got = as_dict(rank_postings(["x"], np.zeros(n, np.int64), np.arange(n), weight))["x"]
    want = sorted(((i, max(1, round(1000 * w))) for i, w in enumerate(weight.tolist())),
                  key=lambda kv: (-kv[1], kv[0]))[:MAX_POSTINGS]
    assert got == want
    huge = as_dict(rank_postings(["x"], np.zeros(n, np.int64), np.arange(n) + 10**16, weight))
    assert huge["x"] == [(i + 10**16, s) for i, s in want]
    odd = rank_postings(["x"], np.zeros(2, np.int64), np.array([4, 5]), np.array([np.nan, 0.5]))
    assert as_dict(odd) == {"x": [(5, 500), (4, 1)]}
    empty = rank_postings([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    index = SearchIndex()
    index.merge(empty)
    assert index.ranked() == {} and as_dict(empty) == {}


def test_search_terms_and_hash_match_the_documented_rules() -> None:
    assert terms_of("Python self.attr (x) == ") == ["python", "self", "attr", "x", "=="]
    assert terms_of("Ｆｕｌｌ") == ["full"]  # NFKC
    assert fnv1a32(b"") == 0x811C9DC5 and fnv1a32(b"a") == 0xE40C292C
