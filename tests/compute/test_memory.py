"""Memory bounds at a real SAE width: the largest tensor any op creates during a pass-1 update (and
the blocked summaries) on a d_sae = 65,536 SAE, recorded by a TorchDispatchMode. Bounds are stated
in terms of what is sparse or blocked, and are far below d_sae^2 or d_vocab x d_sae."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from generator.compute.statistics import Pass1State, Pass2State, SparseBatch
from generator.compute.summaries import coact_neighbours, cosine_neighbours, top_tokens

pytestmark = pytest.mark.slow  # records every tensor of a pass at a 65,536-latent width

D_SAE, D_VOCAB, L0, BATCH, CTX = 65_536, 50_257, 32, 4, 64


class LargestTensor(TorchDispatchMode):
    """Records the byte size of the largest tensor any op creates (in-place ops, which return
    their input, and views of existing storage allocate nothing and are not counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = [*args, *(kwargs or {}).values()]
        existing = {a.untyped_storage().data_ptr() for a in inputs if isinstance(a, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in existing:
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


def random_batch(seed: int, first_seq: int) -> SparseBatch:
    """L0 active latents at every position of BATCH sequences (like a TopK SAE)."""
    gen = torch.Generator().manual_seed(seed)
    positions = BATCH * CTX
    latent = torch.stack([torch.randperm(D_SAE, generator=gen)[:L0].sort().values
                          for _ in range(positions)]).reshape(-1)
    pos = torch.arange(positions).repeat_interleave(L0)
    return SparseBatch(row=pos // CTX, col=pos % CTX, latent=latent,
                       value=torch.rand(len(latent), generator=gen) + 0.01,
                       token=torch.randint(0, D_VOCAB, (len(latent),), generator=gen),
                       seq_ids=torch.arange(first_seq, first_seq + BATCH), ctx=CTX,
                       n_included=positions)


def test_pass1_update_temporaries_are_bounded_at_65k_latents():
    state = Pass1State.empty(D_SAE, 20, "cpu", d_vocab=D_VOCAB, coact=True)
    state.pair_chunk = 1 << 16
    batches = [random_batch(s, s * BATCH) for s in range(3)]
    state.update(batches[0])  # warm: the first fold is allowed to size the state
    nnz = len(batches[1].latent)
    pairs_per_batch = BATCH * CTX * L0 * (L0 - 1) // 2
    with LargestTensor() as probe:
        for b in batches[1:]:
            state.update(b)
    # the host-side sparse folds run in numpy, which reports its allocations to tracemalloc
    # (measured on a second run: the dispatch probe's own bookkeeping would show up there too)
    again = Pass1State.empty(D_SAE, 20, "cpu", d_vocab=D_VOCAB, coact=True)
    again.pair_chunk = state.pair_chunk
    again.update(batches[0])
    tracemalloc.start()
    for b in batches[1:]:
        again.update(b)
    again.token_sums.fold()
    again.coact.fold()
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    state.token_sums.fold()
    state.coact.fold()
    dense_per_seq = BATCH * D_SAE * 4  # per-sequence max, the one dense temporary
    sparse = 8 * max(nnz, state.pair_chunk + CTX * L0, pairs_per_batch // 8)
    bound = max(dense_per_seq, sparse) * 2
    assert probe.largest <= bound
    assert bound < D_VOCAB * D_SAE * 4 / 50 and bound < D_SAE * D_SAE * 4 / 1000
    # the state holds only what occurred, and folding it costs a few copies of that
    held = len(state.token_sums.keys) + len(state.coact.keys)
    assert len(state.token_sums.keys) <= 3 * nnz
    assert len(state.coact.keys) <= 3 * pairs_per_batch
    assert numpy_peak <= 64 * (held + 3 * pairs_per_batch) < D_VOCAB * D_SAE * 4 / 10


def test_pass2_update_and_summaries_are_bounded_at_65k_latents():
    p1 = Pass1State.empty(D_SAE, 20, "cpu", d_vocab=D_VOCAB, coact=True)
    batches = [random_batch(s, s * BATCH) for s in range(2)]
    for b in batches:
        p1.update(b)
    p2 = Pass2State.empty(p1.max_act, 50, 10, 5, 0)
    p2.update(batches[0])
    table = D_SAE * 10 * 5 * 8
    with LargestTensor() as probe:
        p2.update(batches[1])
    assert probe.largest <= max(BATCH * D_SAE * 4, 8 * len(batches[1].latent)) * 2 < table
    with LargestTensor() as probe:
        top_tokens(p1, 10)
        coact_neighbours(p1, 5)
    entries = len(p1.token_sums.keys) + 2 * len(p1.coact.keys)
    assert probe.largest <= max(8 * entries, D_SAE * 10 * 8)
    d = D_SAE // 4  # a quarter of the width keeps the all-pairs product quick on 2 cores
    w_dec = torch.from_numpy(np.random.default_rng(0).normal(size=(d, 16)).astype(np.float32))
    with LargestTensor() as probe:
        cosine_neighbours(w_dec, 5, chunk=256)
    assert probe.largest <= max(256 * d * 8, d * 16 * 4) <= d * d * 4 / 32
