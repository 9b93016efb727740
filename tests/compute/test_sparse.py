"""The sparse building blocks against plain-Python references."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pytest
import torch

from generator.compute.sparse import (
    SparseSums,
    best_per_group,
    coactive_pairs,
    coalesce,
    top_per_group,
    top_rows,
)


@pytest.mark.parametrize("n,slack", [(1, 0), (3, 0), (3, 2), (5, 8), (12, 8)])
def test_top_rows_breaks_ties_by_lower_column(n, slack):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(40, 12)).astype(np.float32)  # many ties
    scores[3] = 1.0  # a row that is one big tie
    vals, cols = top_rows(torch.from_numpy(scores), n, slack=slack)
    for r in range(len(scores)):
        ranked = sorted(range(12), key=lambda c: (-scores[r, c], c))[:n]
        assert cols[r].tolist() == ranked
        assert vals[r].tolist() == [float(scores[r, c]) for c in ranked]


def test_best_per_group_keeps_first_by_keys():
    groups = torch.tensor([2, 0, 2, 1, 0, 2, 2])
    score = torch.tensor([5, 1, 5, 3, 2, 9, 1])
    idx, grp, rank = best_per_group(groups, [score], 2)
    got = {(int(g), int(r)): int(i) for i, g, r in zip(idx, grp, rank, strict=True)}
    assert got == {(0, 0): 1, (0, 1): 4, (1, 0): 3, (2, 0): 6, (2, 1): 0}


@pytest.mark.parametrize("min_fold,fold_slice", [(1, 1 << 22), (4, 3), (1 << 20, 1 << 22), (2, 1)])
def test_sparse_sums_equal_a_dict_for_any_batching_and_merge(min_fold, fold_slice):
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 30, size=500)
    vals = rng.integers(-(1 << 40), 1 << 40, size=500)  # fixed-point values
    ref_sum: dict[int, int] = {}
    ref_count: dict[int, int] = {}
    for k, v in zip(keys.tolist(), vals.tolist(), strict=True):
        ref_sum[k] = ref_sum.get(k, 0) + v
        ref_count[k] = ref_count.get(k, 0) + 1
    parts = []
    for cut in ([0, 500], [0, 17, 250, 500]):
        states = []
        for lo, hi in itertools.pairwise(cut):
            st = SparseSums.empty("cpu")
            st.min_fold, st.fold_slice = min_fold, fold_slice
            for b in range(lo, hi, 7):
                e = min(b + 7, hi)
                st.add(torch.from_numpy(keys[b:e]), torch.from_numpy(vals[b:e]))
            states.append(st)
        merged = states[0]
        for other in states[1:]:
            merged = merged.merge(other)
        parts.append(merged.fold())
    for st in parts:
        assert st.keys.tolist() == sorted(ref_sum)
        assert st.counts.tolist() == [ref_count[k] for k in sorted(ref_sum)]
        assert st.sums.tolist() == [ref_sum[k] for k in sorted(ref_sum)]
        assert not st.pending


@pytest.mark.parametrize("high", [50, 1 << 40])
def test_coalesce_of_bare_keys_counts_them(high):
    """Keys dense in their range (counted) and sparse ones (sorted) give the same totals."""
    keys = np.random.default_rng(3).integers(0, high, size=200)
    got_keys, sums, counts = coalesce(torch.from_numpy(keys), None, torch.ones(200, dtype=torch.int64))
    want = collections.Counter(keys.tolist())
    assert sums is None
    assert got_keys.tolist() == sorted(want)
    assert counts.tolist() == [want[k] for k in sorted(want)]


@pytest.mark.parametrize("by", ["_pairs_by_count", "_pairs_by_entry"])
@pytest.mark.parametrize("chunk", [1, 3, 1 << 22])
def test_coactive_pairs_are_every_pair_at_every_position(chunk, by):
    """Both expansions (the CPU's by active count, the GPU's by entry) give every pair once."""
    from generator.compute import sparse

    rng = np.random.default_rng(2)
    d = 9
    active = rng.random((30, d)) < 0.4
    active[5] = True  # a position where every latent fires
    active[6] = False  # and one where none does
    position, latent = np.nonzero(active)
    for p in range(30):  # latents in any order within a position
        at = position == p
        latent[at] = rng.permutation(latent[at])
    _, per_pos = torch.unique_consecutive(torch.from_numpy(position), return_counts=True)
    chunks = list(getattr(sparse, by)(per_pos, torch.from_numpy(latent), d, chunk))
    want = [i * d + j for p in range(30) for i in range(d) for j in range(i + 1, d)
            if active[p, i] and active[p, j]]
    assert sorted(torch.cat(chunks).tolist()) == sorted(want)
    assert len(chunks) > 1 if chunk < (1 << 22) else len(chunks) == 1
    if by == "_pairs_by_count":  # what coactive_pairs runs on a CPU
        got = coactive_pairs(torch.from_numpy(position), torch.from_numpy(latent), d, chunk)
        assert sorted(torch.cat(list(got)).tolist()) == sorted(want)


@pytest.mark.parametrize("n", [1, 3, 6])
def test_top_per_group_equals_a_full_sort(n):
    """Scores that tie exactly, and scores that differ only below float32 precision (the
    threshold is found on float32-rounded scores, the order must still be exact)."""
    rng = np.random.default_rng(3)
    d, e = 7, 120
    g = rng.integers(0, d - 1, size=e)  # group d-1 stays empty
    x = rng.permutation(10 * e)[:e]
    base = rng.integers(0, 5, size=e).astype(np.float64)
    score = base + rng.integers(0, 3, size=e) * 1e-12  # same float32, different float64
    ids, vals = top_per_group(torch.from_numpy(score), [(torch.from_numpy(g), torch.from_numpy(x))],
                              d, n)
    for grp in range(d):
        members = sorted(np.nonzero(g == grp)[0], key=lambda k: (-score[k], x[k]))[:n]
        want = [int(x[k]) for k in members]
        assert [int(v) for v in ids[grp] if v != -1] == want
        assert vals[grp][: len(want)].tolist() == [float(score[k]) for k in members]
    # two sides: symmetric pairs listed under both endpoints
    a, b = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 2, 3])
    s = torch.tensor([0.5, 0.9, 0.9, 0.1], dtype=torch.float64)
    ids, _ = top_per_group(s, [(a, b), (b, a)], 4, 2)
    assert ids.tolist() == [[2, 1], [2, 0], [0, 1], [2, -1]]
