"""Null sequences: per latent, a few corpus sequences on which it is verified to be zero, the
held-out non-activating examples an explanation scorer (delphi's detection and fuzzing) shows
beside the activating ones.

    pool        NULL_POOL (64) sequences of the corpus, every sequence of a smaller one: those
                with the smallest key (h(seed, s, 2³² - 1) << 31) | s, i.e. the interval
                samples' key (statistics.sample_keys) at a latent id that no latent has. The
                same seed gives the same pool, spread over the whole corpus. The pool's order
                is ascending key (the order the hash draws the sequences in).
    null_seqs   per latent, the first NULL_PER_LATENT (8) pool sequences, in the pool's order,
                on which it has no active entry: a = 0 at every included position of the
                sequence (HookedSAE.included: not BOS, not padding, not a position excluded for
                its activation norm). -1 pads a latent that is zero on fewer than 8 pool
                sequences (a dense one). A latent may still fire at an excluded position of a
                null sequence (its BOS), which no statistic counts either.

"Zero" is "no entry" among pass 1's active entries (a > 0; Engine.entries_of: its cache, or
the batch re-run, whose bits do not depend on the process), so a null sequence is zero in
exactly the bits the statistics saw. The pipeline keeps the whole pool in the store
(StoreData.seq_ids), so every id in null_seqs has its tokens there.

Memory: a bool [P, d_sae] mask of the latents active on each pool sequence (P = 64: 64 MB at
1,048,576 latents) + the result, d_sae x NULL_PER_LATENT x 4 bytes (32 MB at 1M) + while
selecting, O(d_sae) temporaries of one pool row (~10 bytes per latent); the entries come one
batch at a time. Work: the batches' entries once, then P vectorised steps over the latents.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from jaxtyping import Bool, Int

from generator.compute.statistics import SparseBatch, sample_keys

NULL_POOL = 64
"""sequences in the pool (fewer when the corpus has fewer)."""
NULL_PER_LATENT = 8
"""null sequences kept per latent."""
POOL_LATENT = 0xFFFFFFFF
"""the latent id the pool's keys are drawn at: none has it (d_sae < 2**32)."""


def null_pool(n_seqs: int, seed: int, size: int = NULL_POOL) -> Int[np.ndarray, " pool"]:
    """The pool (module docstring): global sequence ids (int32), in the pool's order. The keys
    are distinct (s is their low bits), so the order has no ties. Memory: the keys and the
    hash's temporaries, ~32 bytes per corpus sequence (0.7 s and 310 MB for 10 M sequences)."""
    seqs = torch.arange(n_seqs, dtype=torch.int64)
    keys = sample_keys(seed, seqs, torch.tensor(POOL_LATENT, dtype=torch.int64))
    chosen = torch.topk(keys, min(size, n_seqs), largest=False, sorted=True).indices
    return chosen.numpy().astype(np.int32)


class NullScan:
    """The latents active on each pool sequence, from batches of active entries as they pass
    by (`see`, `see_all`, `watch`), then each latent's null sequences (`null_seqs`)."""

    def __init__(self, pool: Int[np.ndarray, " pool"], d_sae: int) -> None:
        self.pool = np.asarray(pool, dtype=np.int64)
        self._by_seq = np.argsort(self.pool)
        """the pool's rows by ascending sequence id."""
        self.active: Bool[np.ndarray, "pool d_sae"] = np.zeros((len(pool), d_sae), dtype=bool)
        self.seen = np.zeros(len(pool), dtype=bool)
        """pool sequences some batch held: a sequence never seen would pass for zero."""

    def see(self, sparse: SparseBatch) -> None:
        """Mark the latents active on the batch's pool sequences (its other rows are left out)."""
        if not len(self.pool):
            return
        ids = self.pool[self._by_seq]
        seq_ids = sparse.seq_ids.cpu().numpy()
        at = np.minimum(np.searchsorted(ids, seq_ids), len(ids) - 1)
        pool_row = np.where(ids[at] == seq_ids, self._by_seq[at], -1)  # per batch row
        self.seen[pool_row[pool_row >= 0]] = True
        rows = pool_row[sparse.row.cpu().numpy()]
        hit = rows >= 0
        self.active[rows[hit], sparse.latent.cpu().numpy()[hit]] = True

    def see_all(self, entries: Iterable[SparseBatch]) -> None:
        for sparse in entries:
            self.see(sparse)

    def watch(self, entries: Iterable[SparseBatch]) -> Iterator[SparseBatch]:
        """`entries`, each passed on once seen: the pool is scanned inside another stage's walk
        over the same batches (the corpus view's)."""
        for sparse in entries:
            self.see(sparse)
            yield sparse

    def null_seqs(self, k: int = NULL_PER_LATENT) -> Int[np.ndarray, "d_sae k"]:
        """Per latent, its null sequences (module docstring), once every pool sequence was seen."""
        if not self.seen.all():
            missing = self.pool[~self.seen][:5].tolist()
            raise RuntimeError(f"null pool sequences {missing} were never seen: walk every "
                               "batch that holds the pool")
        return first_nulls(self.active, self.pool, k)


def first_nulls(active: Bool[np.ndarray, "pool d_sae"], pool: Int[np.ndarray, " pool"],
                k: int = NULL_PER_LATENT) -> Int[np.ndarray, "d_sae k"]:
    """Per latent (a column of `active`), the first k pool sequences (its rows, in order) on
    which it is not active, as sequence ids (int32), -1 padded. One vectorised step per pool
    row, none per latent."""
    d_sae = active.shape[1]
    out = np.full((d_sae, k), -1, dtype=np.int32)
    filled = np.zeros(d_sae, dtype=np.int32)
    for row, seq in enumerate(np.asarray(pool).tolist()):
        take = np.flatnonzero(~active[row] & (filled < k))
        out[take, filled[take]] = seq
        filled[take] += 1
    return out
