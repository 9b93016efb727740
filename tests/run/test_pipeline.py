"""generator.run.pipeline.view_and_nulls on a real engine run of the tiny model: the store keeps
the null pool beside the examples' sequences, every null sequence is kept and zero by brute
force, and the corpus view's walk gives the same null sequences as a walk over the pool alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from generator.compute.activations import HookedSAE
from generator.compute.corpusview import compute_corpus_view
from generator.compute.engine import Engine, EngineSettings
from generator.compute.nulls import null_pool
from generator.inputs.sites import parse_hook
from generator.run.pipeline import view_and_nulls
from tests.helpers import BOS, cached, tiny_model, tiny_sae, tiny_tokens
from tests.reference import reference_null_pool, reference_null_seqs

HOOK = "blocks.1.hook_mlp_out"
SEED = 3


@pytest.fixture(scope="module")
def run():
    """(tokens, SAE, engine after the passes, its examples) with a corpus view, few examples per
    latent, so that the pool adds sequences no example points to."""
    model, sae, tokens = tiny_model(), tiny_sae("jumprelu", HOOK), tiny_tokens(n_seqs=90, ctx=8)
    engine = Engine(HookedSAE(model, sae, parse_hook(HOOK)), tokens, BOS, EngineSettings(
        k=1, n_intervals=1, m=1, seed=SEED, batch_size=8, quiet=True, clean_loss=True))
    p1 = engine.pass1(np.arange(len(tokens)))
    shown = engine.examples(p1, engine.pass2(p1.max_act))
    assert shown is not None
    with torch.no_grad():
        acts = sae.encode(cached(model, torch.from_numpy(tokens).long(), HOOK)[HOOK]).numpy()
    return tokens, acts, engine, shown.examples


def test_kept_sequences_hold_the_pool_and_every_null_sequence(run):
    tokens, acts, engine, ex = run
    kept, view, nulls = view_and_nulls(engine, ex.seq, SEED)
    pool = null_pool(len(tokens), SEED)
    assert kept.tolist() == sorted(set(ex.seq.tolist()) | set(pool.tolist()))
    assert kept.dtype == ex.seq.dtype and len(kept) > len(np.unique(ex.seq))
    assert np.isin(nulls[nulls != -1], kept).all()
    want = reference_null_seqs(acts, tokens != BOS, reference_null_pool(len(tokens), SEED))
    assert nulls.tolist() == want
    shown = set(zip(ex.latent.tolist(), ex.seq.tolist(), strict=True))  # active on its examples
    assert not any((i, s) in shown for i, row in enumerate(nulls.tolist()) for s in row)


def test_the_corpus_views_walk_changes_neither_view_nor_nulls(run, monkeypatch):
    """The view of the kept sequences is the view computed alone; without the corpus view
    (a walk over the pool's batches only), the same null sequences."""
    tokens, _, engine, ex = run
    kept, view, nulls = view_and_nulls(engine, ex.seq, SEED)
    alone = compute_corpus_view(kept, tokens.shape[1], engine.entries_of(kept))
    assert view is not None and len(view.n_latents) == len(kept)
    for name in ("n_latents", "row", "pos", "latent", "act", "s_row", "s_latent", "loss"):
        np.testing.assert_array_equal(getattr(view, name), getattr(alone, name))
    monkeypatch.setattr(engine, "s", replace(engine.s, clean_loss=False))
    kept_2, no_view, nulls_2 = view_and_nulls(engine, ex.seq, SEED)
    assert no_view is None and np.array_equal(kept_2, kept) and np.array_equal(nulls_2, nulls)
