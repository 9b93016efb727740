"""The shard-at-once example codes (generator/site/shardcodes.py) equal the per-example reference
(PageBuilder.examples_of) on every latent: hostile and realistic stores, with and without
ablation, every Showing, shards of every size."""

from __future__ import annotations

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
