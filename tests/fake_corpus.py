"""Hand-made corpus-view data for render and browser tests (no model): the kept sequences of a
fake store, active where its examples say (so the pages' Δloss join has something to find) and
on a few random other latents, reduced by the brute-force reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from generator.compute.corpusview import CORPUS_LIST, CORPUS_TOP
from generator.store.schema import StoreData
from tests.reference import reference_corpus_view


def with_corpus(data: StoreData, seed: int = 7, top: int = CORPUS_TOP,
                k: int = CORPUS_LIST) -> StoreData:
    rng = np.random.default_rng(seed)
    bos = data.meta.bos_id
    tokens = data.seq_tokens
    n, ctx = tokens.shape
    d_sae = data.latents.d_sae
    acts = np.zeros((n, ctx, d_sae), dtype=np.float32)
    ex = data.examples
    rows = np.searchsorted(data.seq_ids, ex.seq)
    example_pairs = set(zip(rows.tolist(), ex.latent.tolist(), strict=True))
    for j in range(len(ex.seq)):
        acts[rows[j], :, ex.latent[j]] = ex.acts[j]
    live = np.flatnonzero(data.latents.n_active > 0)
    for r in range(n):
        for p in range(ctx):
            for i in rng.choice(live, size=3, replace=False):
                if (r, int(i)) not in example_pairs:
                    acts[r, p, i] = rng.uniform(0.05, float(data.latents.max_act[i]))
    acts[tokens == bos] = 0.0
    ok = np.append(tokens[:, 1:] != bos, np.zeros((n, 1), bool), axis=1)
    loss = np.where(ok, rng.uniform(0.5, 5, (n, ctx)), np.nan)
    return replace(data, corpus=reference_corpus_view(acts, loss, top, k))
