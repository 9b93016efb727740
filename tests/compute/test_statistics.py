"""The streaming statistics against the brute-force references, for several batch sizes and for
the corpus split into shards whose states are merged. Activations are quantized to multiples of
0.5 so that ties (in per-sequence max, in histogram edges) are common and tie-breaking is tested."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.compute.statistics import Pass1State, Pass2State, SparseBatch, first_positions
from generator.compute.summaries import coact_neighbours, cosine_neighbours, logit_effects, top_tokens
from tests.reference import (
    reference_jaccard,
    reference_latent,
    reference_logit_effects,
    reference_position_totals,
    reference_top_tokens,
)

S, T, D, V = 23, 9, 7, 11
K, N_BINS, N_INT, M, SEED = 4, 10, 5, 2, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    acts = (rng.integers(0, 9, size=(S, T, D)) * 0.5).astype(np.float32)
    acts[rng.random((S, T, D)) < 0.6] = 0.0
    acts[:, :, 6] = 0.0  # a dead latent
    tokens = rng.integers(1, V, size=(S, T)).astype(np.int64)
    tokens[:, 0] = 0  # BOS first
    tokens[rng.random((S, T)) < 0.1] = 0  # document boundaries
    mask = tokens != 0
    acts = acts * mask[..., None]
    return acts, mask, tokens


def run_states(acts, mask, tokens, batch: int, seqs: range, valve: tuple[int, int] | None = None):
    """valve: (coact_max_pairs, coact_keep), a co-activation pair budget."""
    p1 = Pass1State.empty(D, K, "cpu", d_vocab=V, coact=True)
    if valve:
        p1.coact_max_pairs, p1.coact_keep = valve
        p1.coact.min_fold = 1  # fold (and so check the budget) after every batch
    elif batch % 2:  # tiny chunks and folds: exercise the chunked pair expansion and sparse merges
        p1.pair_chunk = 5
        p1.token_sums.min_fold = p1.coact.min_fold = 3
        p1.token_sums.fold_slice = p1.coact.fold_slice = 4  # folds one key range at a time
    for lo in range(seqs.start, seqs.stop, batch):
        sl = slice(lo, min(lo + batch, seqs.stop))
        p1.update(SparseBatch.from_dense(torch.from_numpy(acts[sl]), torch.from_numpy(mask[sl]),
                                         torch.arange(sl.start, sl.stop), torch.from_numpy(tokens[sl])))
    return p1


def run_pass2(acts, max_act, batch: int, seqs: range, coact_keys=None):
    p2 = Pass2State.empty(max_act, N_BINS, N_INT, M, SEED, coact_keys=coact_keys)
    for lo in range(seqs.start, seqs.stop, batch):
        sl = slice(lo, min(lo + batch, seqs.stop))
        p2.update(SparseBatch.from_dense(torch.from_numpy(acts[sl]), torch.from_numpy(acts[sl].any(2)),
                                         torch.arange(sl.start, sl.stop), torch.zeros(acts[sl].shape[:2],
                                                                                       dtype=torch.long)))
    return p2


def engine(acts, mask, tokens, batch: int, cuts: list[int], valve: tuple[int, int] | None = None):
    """Run each shard [cuts[j], cuts[j+1]) separately and merge, as ranks under torchrun do."""
    shards = [range(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    p1s = [run_states(acts, mask, tokens, batch, r, valve) for r in shards]
    p1 = p1s[0]
    for other in p1s[1:]:
        p1 = p1.merge(other)
    recount = p1.coact.fold().keys if p1.coact_pruned else None
    p2s = [run_pass2(acts, p1.max_act, batch, r, recount) for r in shards]
    p2 = p2s[0]
    for other in p2s[1:]:
        p2 = p2.merge(other)
    return p1, p2


SPLITS = [(1, [0, S]), (4, [0, S]), (7, [0, S]), (64, [0, S]), (3, [0, 10, S]),
          (5, [0, 4, 15, S]), (2, [0, 22, S])]


@pytest.mark.parametrize("batch,cuts", SPLITS)
def test_engine_matches_reference(data, batch, cuts):
    acts, mask, tokens = data
    p1, p2 = engine(acts, mask, tokens, batch, cuts)
    assert p1.n_tokens == int(mask.sum())
    sample_seqs = p2.sample_seqs().numpy()
    for i in range(D):
        ref = reference_latent(acts, mask, i, K, N_BINS, N_INT, M, SEED)
        assert int(p1.n_active[i]) == ref.n_active
        assert float(p1.max_act[i]) == ref.max_act
        assert float(p1.sum_act[i]) == ref.sum_act  # fixed point: exact for any split
        got_top = [int(s) for s in p1.top_seqs[i] if s != -1]
        assert got_top == ref.top_seqs
        assert [float(v) for v in p1.top_vals[i][: len(got_top)]] == ref.top_vals
        assert p2.hist[i].tolist() == ref.hist
        assert p2.interval_counts[i].tolist() == ref.interval_counts
        got_samples = [[int(s) for s in row if s != -1] for row in sample_seqs[i]]
        assert got_samples == ref.samples


@pytest.mark.parametrize("batch,cuts", [(1, [0, S]), (4, [0, S]), (3, [0, 10, S]),
                                         (5, [0, 4, 15, S])])
def test_bos_and_first_position_totals(data, batch, cuts):
    """Activations at BOS positions count only in the BOS totals; first positions (right after a
    BOS) in the first-position totals and everywhere else; exact for any batching and split."""
    acts, mask, tokens = data
    rng = np.random.default_rng(1)
    at_bos = (rng.integers(1, 9, size=acts.shape) * 0.25).astype(np.float32)
    at_bos[rng.random(acts.shape) < 0.5] = 0.0
    with_bos = np.where(mask[..., None], acts, at_bos)
    assert (with_bos[~mask] > 0).any() and (first_positions(torch.from_numpy(mask)).numpy()).any()
    shards = [range(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    p1 = run_states(with_bos, mask, tokens, batch, shards[0])
    for r in shards[1:]:
        p1 = p1.merge(run_states(with_bos, mask, tokens, batch, r))
    clean = run_states(acts, mask, tokens, batch, range(S))
    assert torch.equal(p1.n_active, clean.n_active) and torch.equal(p1.sum_fixed, clean.sum_fixed)
    assert torch.equal(p1.top_seqs, clean.top_seqs) and not clean.bos_fixed.any()
    for i in range(D):
        bos, first = reference_position_totals(with_bos, mask, i)
        assert float(p1.bos_act[i]) == bos and float(p1.first_act[i]) == first
    assert float(p1.bos_act.sum()) > 0 and float(p1.first_act.sum()) > 0
    again = Pass1State.from_state_dict(p1.state_dict(), "cpu")
    assert torch.equal(again.bos_fixed, p1.bos_fixed) and torch.equal(again.first_fixed,
                                                                      p1.first_fixed)


def test_dead_latent_is_empty(data):
    acts, mask, tokens = data
    p1, p2 = engine(acts, mask, tokens, 5, [0, S])
    assert int(p1.n_active[6]) == 0 and float(p1.max_act[6]) == 0.0
    assert (p1.top_seqs[6] == -1).all() and int(p2.hist[6].sum()) == 0


@pytest.mark.parametrize("batch,cuts", [(3, [0, S]), (4, [0, 9, S])])
def test_top_tokens_and_coactivation(data, batch, cuts):
    acts, mask, tokens = data
    p1, _ = engine(acts, mask, tokens, batch, cuts)
    ids, sums, counts = top_tokens(p1, 3)
    for i in range(D):
        ref = reference_top_tokens(acts, mask, tokens, i, 3)
        got = [(int(t), float(s), int(c)) for t, s, c in zip(ids[i], sums[i], counts[i],
                                                             strict=True) if t != -1]
        assert [g[0] for g in got] == [r[0] for r in ref]
        assert [g[2] for g in got] == [r[2] for r in ref]
        assert [g[1] for g in got] == [np.float32(r[1]) for r in ref]
    nb_ids, nb_vals = coact_neighbours(p1, 3)
    for i in range(D):
        jac = {j: reference_jaccard(acts, mask, i, j) for j in range(D) if j != i}
        ranked = sorted((j for j in jac if jac[j] > 0), key=lambda j: (-jac[j], j))[:3]
        assert [int(j) for j in nb_ids[i] if j != -1] == ranked
        np.testing.assert_allclose(nb_vals[i][: len(ranked)], [jac[j] for j in ranked], rtol=1e-6)


def test_state_size_independent_of_corpus_length(data):
    acts, mask, tokens = data
    long = [np.concatenate([x] * 4) for x in (acts, mask, tokens)]

    def nbytes(state) -> int:
        return sum(v.numel() * v.element_size() for v in vars(state).values()
                   if isinstance(v, torch.Tensor))

    short1, short2 = engine(acts, mask, tokens, 4, [0, S])
    long1 = run_states(*long, 4, range(4 * S))
    long2 = run_pass2(long[0], long1.max_act, 4, range(4 * S))
    # the sparse parts hold one entry per distinct (latent, token) / (latent, latent) pair, which
    # repeating the corpus does not add to
    for s in (short1, long1):
        s.token_sums.fold()
        s.coact.fold()
    assert short1.nbytes == long1.nbytes and nbytes(short2) == nbytes(long2)
    assert long1.n_tokens == 4 * short1.n_tokens


def test_logit_effects_match_reference():
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(5, 8)).astype(np.float32)
    w_u = rng.normal(size=(8, 40)).astype(np.float32)
    got = logit_effects(torch.from_numpy(directions), torch.from_numpy(w_u), 4, 6, chunk=2)
    for i in range(5):
        pos, neg, counts, eff = reference_logit_effects(directions[i], w_u, 4, 6)
        assert got.pos_ids[i].tolist() == pos and got.neg_ids[i].tolist() == neg
        np.testing.assert_allclose(got.pos_vals[i], eff[pos], rtol=1e-5)
        np.testing.assert_allclose(got.neg_vals[i], eff[neg], rtol=1e-5)
        assert got.hist[i].sum() == 40
        # bins come from float32 arithmetic: a value within rounding of an edge may move by one
        assert np.abs(got.hist[i] - np.asarray(counts)).sum() <= 2
        assert got.lo[i] == pytest.approx(eff.min(), rel=1e-5)


def test_cosine_neighbours_match_reference():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(9, 4)).astype(np.float32)
    ids, vals = cosine_neighbours(torch.from_numpy(w), 3, chunk=4)
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    for i in range(9):
        sims = {j: float(unit[i] @ unit[j]) for j in range(9) if j != i}
        ranked = sorted(sims, key=lambda j: (-sims[j], j))[:3]
        assert ids[i].tolist() == ranked
        np.testing.assert_allclose(vals[i], [sims[j] for j in ranked], rtol=1e-5)


@pytest.mark.parametrize("chunk,slack", [(3, 0), (4, 2), (5, 8), (100, 8)])
def test_cosine_neighbours_break_ties_by_lower_id(chunk, slack):
    """Axis-aligned decoder rows give cosines of exactly 1, 0 and -1: ties everywhere, across
    block boundaries, and past the running candidates (the full-row fallback)."""
    rng = np.random.default_rng(5)
    axes = np.eye(3, dtype=np.float32)
    w = np.concatenate([axes, -axes])[rng.integers(0, 6, size=17)]
    ids, vals = cosine_neighbours(torch.from_numpy(w), 4, chunk=chunk, slack=slack)
    for i in range(len(w)):
        sims = {j: float(w[i] @ w[j]) for j in range(len(w)) if j != i}
        ranked = sorted(sims, key=lambda j: (-sims[j], j))[:4]
        assert ids[i].tolist() == ranked
        assert vals[i].tolist() == [sims[j] for j in ranked]


@pytest.mark.parametrize("keep,batch,cuts", [(2, 3, [0, S]), (2, 4, [0, 9, S]), (6, 5, [0, S])])
def test_coactivation_valve_recounts_candidates_exactly(data, keep, batch, cuts):
    """With the memory valve firing (a tiny pair budget), every listed neighbour's Jaccard is
    still exact (pass 2 recounts the candidates), the neighbours are the best candidates, and
    when every partner fits (keep >= D - 1) the result equals the all-pairs one."""
    acts, mask, tokens = data
    p1, p2 = engine(acts, mask, tokens, batch, cuts, valve=(5, keep))  # 5 of 21 pairs: it fires
    assert p1.coact_pruned
    cand = p1.coact.fold().keys
    nb_ids, nb_vals = coact_neighbours(p1, 3, p2)
    pairs = {(int(k) // D, int(k) % D) for k in cand}
    for i in range(D):
        partners = [j for j in range(D) if (min(i, j), max(i, j)) in pairs]
        jac = {j: reference_jaccard(acts, mask, i, j) for j in partners}
        ranked = sorted((j for j in jac if jac[j] > 0), key=lambda j: (-jac[j], j))[:3]
        assert [int(j) for j in nb_ids[i] if j != -1] == ranked
        np.testing.assert_allclose(nb_vals[i][: len(ranked)], [jac[j] for j in ranked], rtol=1e-6)
        if keep >= D - 1:
            every = {j: reference_jaccard(acts, mask, i, j) for j in range(D) if j != i}
            best = sorted((j for j in every if every[j] > 0), key=lambda j: (-every[j], j))[:3]
            assert ranked == best


def test_out_of_memory_while_folding_loses_nothing(data, monkeypatch):
    """A GPU out-of-memory error while folding sparse totals (after the batch is committed)
    leaves the entries pending; later folds take them in and the totals stay exact."""
    from generator.compute.sparse import SparseSums

    acts, mask, tokens = data
    real_fold = SparseSums.fold
    failures = {"left": 3}

    def flaky_fold(self):
        if self.pending and failures["left"] > 0:
            failures["left"] -= 1
            raise torch.OutOfMemoryError("simulated")
        return real_fold(self)

    monkeypatch.setattr(SparseSums, "fold", flaky_fold)
    p1 = Pass1State.empty(D, K, "cpu", d_vocab=V, coact=True)
    p1.token_sums.min_fold = p1.coact.min_fold = 1
    for lo in range(0, S, 4):
        sl = slice(lo, min(lo + 4, S))
        p1.update(SparseBatch.from_dense(torch.from_numpy(acts[sl]), torch.from_numpy(mask[sl]),
                                         torch.arange(sl.start, sl.stop), torch.from_numpy(tokens[sl])))
    assert failures["left"] == 0
    ids, sums, counts = top_tokens(p1, 3)
    for i in range(D):
        ref = reference_top_tokens(acts, mask, tokens, i, 3)
        assert [int(t) for t in ids[i] if t != -1] == [r[0] for r in ref]
        assert counts[i][: len(ref)].tolist() == [r[2] for r in ref]
    nb_ids, _ = coact_neighbours(p1, 3)
    for i in range(D):
        jac = {j: reference_jaccard(acts, mask, i, j) for j in range(D) if j != i}
        assert [int(j) for j in nb_ids[i] if j != -1] == \
            sorted((j for j in jac if jac[j] > 0), key=lambda j: (-jac[j], j))[:3]
