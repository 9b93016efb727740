"""The shard-at-once example codes (generator/site/shardcodes.py) equal the per-example reference
(PageBuilder.examples_of) on every latent: hostile and realistic stores, with and without
ablation, every Showing, shards of every size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from generator.site.builder import PageBuilder
from generator.site.contexts import COMPACT_SHOWING, DEFAULT_SHOWING
from generator.site.shardcodes import shard_examples, window_codes
from generator.site.writer import SiteWriter
from tests.fake_store import make_scaled_store, make_store

STORES = {"hostile": lambda: make_store(), "bare": lambda: make_store(optional=False),
          "scaled": lambda: make_scaled_store(d_sae=24, n_seqs=600)}


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("showing", [DEFAULT_SHOWING, COMPACT_SHOWING], ids=["default", "compact"])
@pytest.mark.parametrize("shard", [1, 5, 64])
def test_shard_codes_equal_the_reference(store: str, showing: object, shard: int) -> None:
    data = STORES[store]()
    pages = PageBuilder(data, {}, showing)
    d = data.latents.d_sae
    for lo in range(0, d, shard):
        got = shard_examples(pages, lo, min(d, lo + shard))
        for i, (top, groups, blob) in zip(range(lo, min(d, lo + shard)), got, strict=True):
            want_top, want_groups, want_blob = pages.examples_of(i, html=False)
            assert blob == want_blob, i
            assert top == want_top, i
            assert groups == want_groups, i


def test_window_codes_are_the_windows_symbols(tmp_path) -> None:
    data = make_store()
    writer = SiteWriter(data, tmp_path, {}, True, 100, 65536, 1)
    symbols = writer.sequence_symbols()
    pages = writer.pages
    windows = [ex.window for i in range(data.latents.d_sae)
               for ex in pages.examples_of(i, html=False)[0]]
    assert windows
    from generator.site.codec import varint_code

    assert window_codes(symbols, windows) == [
        varint_code(symbols.codes[list(symbols.rows).index(r)][a:b].tolist())
        for r, a, b in windows]
    assert window_codes(symbols, []) == []
    assert np.all([b > a for _, a, b in windows])


@pytest.mark.parametrize("huge", [False, True])
@pytest.mark.parametrize("outside", [0, 1, 4, 12])
def test_shard_codes_at_the_edges_of_the_delta_loss_rules(outside: int, huge: bool) -> None:
    """Δloss on the ±0.01 threshold (in float32: 0.0095 rounds either way by a hair), NaN, and
    many equal |Δ| outside a window (the cap keeps the earliest): the sparse shard path ships
    exactly what the reference does."""
    data = make_store()
    dloss = data.examples.dloss
    assert dloss is not None
    rng = np.random.default_rng(7)
    edge = np.float32(0.0095)
    values = np.array([edge, -edge, np.nextafter(edge, np.float32(0)),
                       np.nextafter(edge, np.float32(1)), np.float32(0.0105), np.float32(-0.02),
                       np.float32(0.05), np.nan, np.float32(0.0)]
                      + ([np.float32(1e15), np.float32(-1e15)] if huge else []),
                      dtype=np.float32)  # huge: too wide for one sort key, so a lexsort
    hostile = values[rng.integers(0, len(values), dloss.shape)].astype(dloss.dtype)
    examples = dataclasses.replace(data.examples, dloss=hostile)
    data = dataclasses.replace(data, examples=examples)
    showing = dataclasses.replace(DEFAULT_SHOWING, dloss_outside=outside)
    pages = PageBuilder(data, {}, showing)
    d = data.latents.d_sae
    got = shard_examples(pages, 0, d)
    for i, (top, groups, blob) in zip(range(d), got, strict=True):
        assert (top, groups, blob) == pages.examples_of(i, html=False), i
