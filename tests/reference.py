"""Brute-force references for every statistic (docs/STATISTICS.md): dense, unbatched, plain Python/numpy,
written straight from the definitions. The engine must match them exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MASK32 = 0xFFFFFFFF


def mix32(x: int) -> int:
    x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    return (x >> 16) ^ x


def sample_key(seed: int, s: int, i: int) -> int:
    return (mix32(mix32(mix32(seed & MASK32) ^ s) ^ i) << 31) | s


SUM_BITS = 24


def fixed_sum(values: list[float]) -> float:
    """The documented sum: each value rounded to a multiple of 2**-24 (half to even), summed
    exactly."""
    return sum(round(v * (1 << SUM_BITS)) for v in values) / (1 << SUM_BITS)


def bin_of(v: float, mx: float, n: int) -> int:
    """The documented float32 formula: ceil(v / max * n) - 1, clamped to [0, n-1]."""
    t = np.float32(np.float32(v) / np.float32(mx)) * np.float32(n)
    return min(n - 1, max(0, math.ceil(float(np.float32(t))) - 1))


@dataclass
class RefLatent:
    n_active: int
    sum_act: float
    max_act: float
    hist: list[int]
    interval_counts: list[int]
    top_seqs: list[int]
    top_vals: list[float]
    samples: list[list[int]]
    """per interval, sequences chosen by smallest key, in key order."""
    seq_max: dict[int, float] = field(default_factory=dict)
    """every sequence's max activation (what a top list is ranked by)."""


def reference_latent(acts: np.ndarray, mask: np.ndarray, i: int, k: int, n_bins: int,
                     n_int: int, m: int, seed: int) -> RefLatent:
    """acts: [S, T, d] float32, mask: [S, T] bool (True = included)."""
    S, T, _ = acts.shape
    values = [float(acts[s, t, i]) for s in range(S) for t in range(T) if mask[s, t]]
    active = [v for v in values if v > 0]
    mx = max(active) if active else 0.0
    hist = [0] * n_bins
    for v in active:
        hist[bin_of(v, mx, n_bins)] += 1
    seq_max = {s: max((float(acts[s, t, i]) for t in range(T) if mask[s, t]), default=0.0)
               for s in range(S)}
    ranked = sorted((s for s in range(S) if seq_max[s] > 0), key=lambda s: (-seq_max[s], s))
    top = ranked[:k]
    counts = [0] * n_int
    members: list[list[int]] = [[] for _ in range(n_int)]
    for s in range(S):
        if seq_max[s] > 0:
            j = bin_of(seq_max[s], mx, n_int)
            counts[j] += 1
            members[j].append(s)
    samples = [sorted(ss, key=lambda s: sample_key(seed, s, i))[:m] for ss in members]
    return RefLatent(len(active), fixed_sum(active), mx, hist, counts, top,
                     [seq_max[s] for s in top], samples, seq_max)


def reference_top_tokens(acts: np.ndarray, mask: np.ndarray, tokens: np.ndarray, i: int,
                         n: int) -> list[tuple[int, float, int]]:
    values: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    for s, t in zip(*np.nonzero(mask), strict=True):
        v = float(acts[s, t, i])
        tok = int(tokens[s, t])
        values.setdefault(tok, []).append(v)
        counts[tok] = counts.get(tok, 0) + (v > 0)
    sums = {tok: fixed_sum(vs) for tok, vs in values.items()}
    ranked = sorted((tok for tok in sums if sums[tok] > 0), key=lambda tok: (-sums[tok], tok))
    return [(tok, sums[tok], counts[tok]) for tok in ranked[:n]]


def reference_token_latents(acts: np.ndarray, mask: np.ndarray, tokens: np.ndarray, token: int,
                            n: int) -> list[tuple[int, float, int]]:
    """The n latents with the largest total activation on `token` (ties to the lower id), with
    that total and how many of its positions they were active on."""
    where = mask & (tokens == token)
    sums = {i: fixed_sum([float(v) for v in acts[where][:, i]]) for i in range(acts.shape[2])}
    ranked = sorted((i for i in sums if sums[i] > 0), key=lambda i: (-sums[i], i))[:n]
    return [(i, sums[i], int((acts[where][:, i] > 0).sum())) for i in ranked]


def reference_jaccard(acts: np.ndarray, mask: np.ndarray, i: int, j: int) -> float:
    a = {(s, t) for s, t in zip(*np.nonzero(mask), strict=True) if acts[s, t, i] > 0}
    b = {(s, t) for s, t in zip(*np.nonzero(mask), strict=True) if acts[s, t, j] > 0}
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def reference_logit_effects(direction: np.ndarray, w_u: np.ndarray, n: int, bins: int):
    eff = direction.astype(np.float64) @ w_u.astype(np.float64)
    order = sorted(range(len(eff)), key=lambda v: (-eff[v], v))
    neg = sorted(range(len(eff)), key=lambda v: (eff[v], v))
    lo, hi = eff.min(), eff.max()
    counts = [0] * bins
    for x in eff:
        counts[min(bins - 1, int(math.floor((x - lo) / (hi - lo) * bins)))] += 1
    return order[:n], neg[:n], counts, eff


def reference_position_totals(acts: np.ndarray, mask: np.ndarray, i: int) -> tuple[float, float]:
    """acts: [S, T, d] at every position, BOS included; mask: True = included. The documented
    totals of latent i: (at the excluded BOS positions, at first positions: included positions
    right after an excluded one)."""
    S, T, _ = acts.shape
    bos = [float(acts[s, t, i]) for s in range(S) for t in range(T)
           if not mask[s, t] and acts[s, t, i] > 0]
    first = [float(acts[s, t, i]) for s in range(S) for t in range(1, T)
             if mask[s, t] and not mask[s, t - 1] and acts[s, t, i] > 0]
    return fixed_sum(bos), fixed_sum(first)


def reference_corpus_view(acts: np.ndarray, loss: np.ndarray, top: int, k: int):
    """The corpus view (generator/compute/corpusview.py) of dense activations [n, ctx, d_sae] (zero at
    BOS) and clean losses [n, ctx]: per sequence, the table is the k latents with the largest
    max and the k with the largest total activation (ties to the lower id); the kept entries
    are each position's `top` most active latents and every active position of the table's."""
    from generator.store.schema import CorpusView

    cols: dict[str, list] = {name: [] for name in ("row", "pos", "latent", "act")}
    table: dict[str, list] = {name: [] for name in ("row", "latent", "n", "max", "sum")}
    n_latents = []
    for r, a in enumerate(acts):
        active = [int(i) for i in np.flatnonzero((a > 0).any(0))]
        n_latents.append(len(active))
        sums = {i: float(np.sum(a[:, i], dtype=np.float64)) for i in active}
        by_max = sorted(active, key=lambda i: (-float(a[:, i].max()), i))[:k]
        by_sum = sorted(active, key=lambda i: (-sums[i], i))[:k]
        chosen = sorted(set(by_max) | set(by_sum))
        for i in chosen:
            for name, value in (("row", r), ("latent", i), ("n", int((a[:, i] > 0).sum())),
                                ("max", float(a[:, i].max())), ("sum", sums[i])):
                table[name].append(value)
        for p in range(a.shape[0]):
            on = [int(i) for i in np.flatnonzero(a[p] > 0)]
            best = sorted(on, key=lambda i: (-float(a[p, i]), i))[:top]
            for i in sorted(set(best) | (set(on) & set(chosen))):
                for name, value in (("row", r), ("pos", p), ("latent", i), ("act", a[p, i])):
                    cols[name].append(value)
    return CorpusView(
        loss=np.asarray(loss, dtype=np.float32), n_latents=np.array(n_latents, np.int32),
        row=np.array(cols["row"], np.int32), pos=np.array(cols["pos"], np.int32),
        latent=np.array(cols["latent"], np.int32), act=np.array(cols["act"], np.float32),
        s_row=np.array(table["row"], np.int32), s_latent=np.array(table["latent"], np.int32),
        s_n_active=np.array(table["n"], np.int32), s_max_act=np.array(table["max"], np.float32),
        s_sum_act=np.array(table["sum"], np.float64))


def reference_null_pool(n_seqs: int, seed: int, size: int = 64) -> list[int]:
    """The null pool (docs/STORE.md, "Null sequences"): the `size` sequences with the smallest
    key (h(seed, s, 2**32 - 1) << 31) | s, in that order."""
    return sorted(range(n_seqs), key=lambda s: sample_key(seed, s, MASK32))[:size]


def reference_null_seqs(acts: np.ndarray, mask: np.ndarray, pool: list[int],
                        k: int = 8) -> list[list[int]]:
    """Per latent, the first k pool sequences (in the pool's order) on which its activation is
    not positive at any included position (mask True), -1 padded; acts: [S, T, d]."""
    out = []
    for i in range(acts.shape[2]):
        zero = [s for s in pool if not (acts[s, :, i][mask[s]] > 0).any()]
        out.append((zero + [-1] * k)[:k])
    return out


def assert_latent_matches(p1, p2, i: int, ref: RefLatent) -> None:
    """The engine's pass-1 statistics of latent i (count, max, top sequences), and its pass-2
    histogram when `p2` is given, equal the reference's."""
    import pytest

    assert int(p1.n_active[i]) == ref.n_active
    assert float(p1.max_act[i]) == pytest.approx(ref.max_act, rel=1e-5)
    got = [int(s) for s in p1.top_seqs[i] if s != -1]
    if got != ref.top_seqs:
        # the engine encodes a few rows at a time; on some CPUs a matmul of another shape rounds
        # one position's activation an ulp apart, which splits an exact tie (same token at
        # hook_embed) differently: each sequence must then still be a tie at its rank
        assert len(got) == len(ref.top_seqs) == len(set(got))
        for s, v in zip(got, ref.top_vals, strict=True):
            assert ref.seq_max[s] == pytest.approx(v, rel=1e-6), (got, ref.top_seqs)
    if p2 is not None:
        assert p2.hist[i].tolist() == ref.hist


def reference_norm_mask(hook_acts: np.ndarray, tokens: np.ndarray, bos: int,
                        multiple: float) -> np.ndarray:
    """docs/STATISTICS.md, "Which positions count": not BOS, and the activation norm at the hook
    at most `multiple` x the lower median of the sequence's non-BOS norms (float64 here)."""
    norms = np.linalg.norm(hook_acts.reshape(*tokens.shape, -1).astype(np.float64), axis=-1)
    mask = tokens != bos
    out = mask.copy()
    for s in range(len(tokens)):
        values = sorted(norms[s][mask[s]].tolist())
        if values:
            out[s] &= norms[s] <= multiple * values[(len(values) - 1) // 2]
    return out
