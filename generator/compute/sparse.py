"""Sparse building blocks of the statistics: grouped top-k, exact sparse sums, co-active pairs.

Nothing here allocates a d_vocab x d_sae or d_sae x d_sae array: every structure is sized by the
entries that actually occur (active (latent, token) pairs, co-active latent pairs), which for an SAE
(tens of active latents per position out of tens of thousands) is a tiny fraction of the dense one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

# ----------------------------------------------------------------------------------------------
# grouped top-k


def rank_in_groups(groups: Int[Tensor, " n"]) -> Int[Tensor, " n"]:
    """Position of each element within its run of equal values (groups must be sorted)."""
    first = torch.searchsorted(groups, groups, right=False)
    return torch.arange(len(groups), device=groups.device) - first


def best_per_group(
    groups: Int[Tensor, " n"], order_keys: list[Tensor], keep: int
) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"], Int[Tensor, " n"]]:
    """Sort elements by (group, *order_keys) ascending and keep the first `keep` of each group.
    Returns (indices of kept elements into the inputs, their group, their rank in the group).
    Memory: a few int64 arrays of length n."""
    perm = torch.arange(len(groups), device=groups.device)
    for key in reversed([groups, *order_keys]):  # stable sorts, least significant key first
        perm = perm[torch.sort(key[perm], stable=True).indices]
    sorted_groups = groups[perm]
    rank = rank_in_groups(sorted_groups)
    kept = rank < keep
    return perm[kept], sorted_groups[kept], rank[kept]


def top_rows(scores: Float[Tensor, "rows cols"], n: int, slack: int = 8) -> tuple[Tensor, Tensor]:
    """Top n per row by value descending, ties to the lower column index (deterministic).

    torch.topk leaves the order of equal values unspecified, so it takes n + slack candidates,
    orders them by (value desc, column asc), and re-sorts in full only the rare rows where a tie
    reaches past the candidates. Memory: O(rows * (n + slack)) beyond the scores."""
    n = min(n, scores.shape[1])
    width = min(n + slack, scores.shape[1])
    cols = scores.topk(width, dim=1, sorted=False).indices.sort(dim=1).values
    vals = scores.gather(1, cols)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices  # ties: lower column
    vals, cols = vals.gather(1, order), cols.gather(1, order)
    last = vals[:, -1:]
    vals, cols = vals[:, :n], cols[:, :n]
    if 0 < n and width < scores.shape[1]:
        # a tie between the n-th value and the last candidate may hide a lower column outside
        unsure = torch.nonzero(last[:, 0] == vals[:, -1], as_tuple=True)[0]
        if len(unsure):
            full = torch.sort(scores[unsure], dim=1, descending=True, stable=True)
            vals[unsure], cols[unsure] = full.values[:, :n], full.indices[:, :n]
    return vals, cols


# ----------------------------------------------------------------------------------------------
# exact sparse sums


@dataclass
class SparseSums:
    """Exact per-key totals over int64 keys, held sparsely: sorted unique keys with an int64 sum
    (optional; fixed-point values, see statistics.to_fixed) and an int64 count each.

    Updates are coalesced per call (sort + unique) and kept pending; pending entries are folded
    into the state once they outnumber it, so the total cost is O(entries log entries), amortised.
    Memory: 24 bytes per distinct key in the state (16 without sums) + the pending entries (at most
    as many as the state, or `min_fold`) + during a fold, the new state and the temporaries of one
    key range (`fold_slice` entries).
    Sums and counts are integers, so results are bit-identical for any batching or shard split.
    """

    with_sums: bool
    keys: Int[Tensor, " u"]
    sums: Int[Tensor, " u"] | None
    counts: Int[Tensor, " u"]
    min_fold: int = 1 << 20
    fold_slice: int = 1 << 22
    """entries coalesced at once in a fold (bounds the fold's temporaries)."""
    pending: list[tuple[Tensor, Tensor | None, Tensor]] = field(default_factory=list)

    @classmethod
    def empty(cls, device: torch.device | str, with_sums: bool = True) -> SparseSums:
        keys = torch.zeros(0, dtype=torch.int64, device=device)
        sums = torch.zeros(0, dtype=torch.int64, device=device) if with_sums else None
        return cls(with_sums, keys, sums, torch.zeros(0, dtype=torch.int64, device=device))

    def add(self, keys: Int[Tensor, " n"], values: Int[Tensor, " n"] | None = None) -> None:
        """Add one occurrence of each key (with its integer value, when sums are kept)."""
        ones = torch.ones_like(keys)
        self.pending.append(coalesce(keys, values, ones))
        self.fold_if_due()

    def fold_if_due(self) -> None:
        """Fold once the pending entries outnumber the state (amortised O(n log n))."""
        if sum(len(p[0]) for p in self.pending) >= max(len(self.keys), self.min_fold):
            self.fold()

    def fold(self) -> SparseSums:
        """Fold the pending entries into the state; returns self. Every part (the state and each
        pending entry) is sorted, so the fold runs one key range at a time: its temporaries are
        those of `fold_slice` entries, and the peak is the old state, the pending entries and the
        new state (~2 x 24 bytes per key + the pending ones)."""
        if not self.pending:
            return self
        parts = [(self.keys, self.sums, self.counts), *self.pending]
        total = sum(len(p[0]) for p in parts)
        largest = max((p[0] for p in parts), key=len)
        n_slices = max(1, min(total // self.fold_slice, len(largest)))
        cuts = largest[torch.linspace(0, len(largest) - 1, n_slices + 1,
                                      device=largest.device).long()[1:-1]]
        bounds = [torch.searchsorted(p[0], cuts).tolist() for p in parts]
        out: list[tuple[Tensor, Tensor | None, Tensor]] = []
        for s in range(n_slices):
            pieces: list[tuple[Tensor, Tensor | None, Tensor]] = []
            for (k, v, c), b in zip(parts, bounds, strict=True):
                lo = 0 if s == 0 else b[s - 1]
                hi = len(k) if s == n_slices - 1 else b[s]
                pieces.append((k[lo:hi], None if v is None else v[lo:hi], c[lo:hi]))
            sums = torch.cat([q[1] for q in pieces]) if self.with_sums else None  # type: ignore[misc]
            out.append(coalesce(torch.cat([q[0] for q in pieces]), sums,
                                torch.cat([q[2] for q in pieces]), runs=True))
        # assigned only once coalesced: an out-of-memory error leaves the entries pending, intact
        self.keys = torch.cat([o[0] for o in out])
        self.sums = torch.cat([o[1] for o in out]) if self.with_sums else None  # type: ignore[misc]
        self.counts = torch.cat([o[2] for o in out])
        self.pending = []
        return self

    def merge(self, other: SparseSums) -> SparseSums:
        """The totals of both (disjoint parts of the corpus)."""
        out = SparseSums(self.with_sums, self.keys, self.sums, self.counts, self.min_fold,
                         self.fold_slice,
                         [*self.pending, (other.keys, other.sums, other.counts), *other.pending])
        return out.fold()

    @property
    def nbytes(self) -> int:
        parts = [(self.keys, self.sums, self.counts), *self.pending]
        return sum(t.numel() * t.element_size() for p in parts for t in p if t is not None)


def coalesce(keys: Tensor, sums: Tensor | None, counts: Tensor,
             runs: bool = False) -> tuple[Tensor, Tensor | None, Tensor]:
    """Sorted unique keys with their summed sums and counts. runs: the keys are a few sorted
    runs one after another (as in a fold), which a merge-based sort exploits."""
    if keys.device.type == "cpu":
        return _coalesce_host(keys, sums, counts, runs)
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    total = torch.zeros(len(uniq), dtype=torch.int64, device=keys.device).index_add_(0, inverse, counts)
    if sums is None:
        return uniq, None, total
    return uniq, torch.zeros(len(uniq), dtype=sums.dtype,
                             device=keys.device).index_add_(0, inverse, sums), total


def _coalesce_host(keys: Tensor, sums: Tensor | None, counts: Tensor,
                   runs: bool) -> tuple[Tensor, Tensor | None, Tensor]:
    """coalesce on the host with numpy, whose vectorised sorts are several times faster than
    torch's CPU sort (which dominates the statistics' cost on CPU). Only keys are sorted when
    nothing rides along (every count 1, no sums); such keys dense in their range are counted."""
    k = keys.numpy()
    if len(k) == 0:
        return keys, sums, counts
    c = counts.numpy()
    bare = sums is None and bool((c == 1).all())
    if bare and k.min() >= 0 and k.max() < 2 * len(k):
        # dense keys (a small SAE's co-active pairs): counting beats sorting, O(n + range)
        total = np.bincount(k, minlength=int(k.max()) + 1)
        present = np.flatnonzero(total)
        return torch.from_numpy(present), None, torch.from_numpy(total[present])
    # numpy's stable sort is a merge sort that finds existing runs: near-linear for a fold
    order = None if bare else np.argsort(k, kind="stable" if runs else "quicksort")
    k = np.sort(k) if order is None else k[order]
    first = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    if order is None:
        total = np.diff(np.append(first, len(k)))
    else:
        total = np.add.reduceat(c[order], first)
    out_sums = None if sums is None else torch.from_numpy(
        np.add.reduceat(sums.numpy()[order], first))
    return torch.from_numpy(k[first]), out_sums, torch.from_numpy(total.astype(np.int64, copy=False))


# ----------------------------------------------------------------------------------------------
# co-active pairs


def coactive_pairs(position: Int[Tensor, " nnz"], latent: Int[Tensor, " nnz"], d: int,
                   max_pairs: int = 1 << 22) -> Iterator[Int[Tensor, " pairs"]]:
    """Every unordered pair of latents active at the same position, as keys i * d + j (i < j),
    in chunks of about `max_pairs` keys (in no particular order). Entries must be grouped by
    position (as the engine produces them). Work: sum over positions of L(L-1)/2, L the
    position's active count. Memory: ~32 bytes per pair of one chunk.

    On a CPU, positions with the same count L are taken together (_pairs_by_count); on a GPU,
    whose kernels would wait on a Python loop over the counts, every entry is expanded at once
    (_pairs_by_entry)."""
    if len(position) == 0:
        return
    _, per_pos = torch.unique_consecutive(position, return_counts=True)
    by = _pairs_by_count if position.device.type == "cpu" else _pairs_by_entry
    yield from by(per_pos, latent, d, max_pairs)


def _pairs_by_count(per_pos: Int[Tensor, " positions"], latent: Int[Tensor, " nnz"], d: int,
                    max_pairs: int) -> Iterator[Int[Tensor, " pairs"]]:
    """The positions with L active latents form an [n, L] matrix whose pairs are one fixed
    triangle of column pairs: two gathers (a TopK SAE has one L, a ReLU SAE a few hundred), 2.6x
    faster on a CPU than the per-entry repeats of _pairs_by_entry on a TopK batch."""
    dev = latent.device
    starts = torch.cumsum(per_pos, 0) - per_pos
    parts: list[Tensor] = []
    size = 0
    for n_active in torch.unique(per_pos).tolist():
        if n_active < 2:
            continue
        first = starts[per_pos == n_active]
        left, right = torch.triu_indices(n_active, n_active, 1, device=dev)
        step = max(1, max_pairs // len(left))
        for lo in range(0, len(first), step):
            # sorted rows: the left column of each pair holds the smaller latent
            rows = latent[first[lo:lo + step, None] + torch.arange(n_active, device=dev)].sort(1).values
            parts.append((rows[:, left] * d + rows[:, right]).reshape(-1))
            size += len(parts[-1])
            if size >= max_pairs:
                yield torch.cat(parts)
                parts, size = [], 0
    if parts:
        yield torch.cat(parts)


def _pairs_by_entry(per_pos: Int[Tensor, " positions"], latent: Int[Tensor, " nnz"], d: int,
                    max_pairs: int) -> Iterator[Int[Tensor, " pairs"]]:
    """Each entry paired with the later entries of its position, by repeats over the entries:
    no loop but over chunks of max_pairs."""
    dev = latent.device
    starts = torch.cumsum(per_pos, 0) - per_pos
    rank = torch.arange(len(latent), device=dev) - torch.repeat_interleave(starts, per_pos)
    n_after = torch.repeat_interleave(per_pos, per_pos) - 1 - rank  # partners later in the group
    ends = torch.cumsum(n_after, 0)
    # chunk boundaries on entries, so that one chunk expands to about max_pairs pairs
    marks = torch.arange(1, int(ends[-1]) // max_pairs + 1, device=dev) * max_pairs
    cuts = torch.searchsorted(ends, marks)
    bounds = [0, *sorted(set((cuts + 1).tolist())), len(latent)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        na = n_after[lo:hi]
        total = int(na.sum()) if hi > lo else 0
        if total == 0:
            continue
        first = torch.repeat_interleave(torch.arange(lo, hi, device=dev), na)
        offset = torch.cumsum(na, 0) - na
        within = torch.arange(total, device=dev) - torch.repeat_interleave(offset, na)
        a, b = latent[first], latent[first + 1 + within]
        yield torch.minimum(a, b) * d + torch.maximum(a, b)


# ----------------------------------------------------------------------------------------------
# top n per group over sparse entries


def top_per_group(score: Float[Tensor, " e"] | Callable[[Tensor], Tensor],
                  sides: list[tuple[Tensor, Tensor]], d: int, n: int,
                  rounded: Float[Tensor, " e"] | None = None,
                  ) -> tuple[Int[Tensor, "d n"], Float[Tensor, "d n"]]:
    """Per group, the n items with the largest score, ties to the lower item id. Each entry e is
    listed under group g[e] with item x[e] for every (g, x) in `sides` (two sides for symmetric
    pairs). `score` is the exact (float64) score of every entry, or a function giving it for the
    entries at the given indices, with `rounded` its float32 rounding. Returns ([d, n] item ids,
    -1 pads; [d, n] float64 scores, 0 pads), on the host.

    Sorting every entry by (group, -score, item) is the obvious way and is slow for tens of
    millions of entries, so each group's n-th largest score is found first by n rounds of scatter
    max over float32-rounded scores (rounding is monotone, so the exact top n all lie at or above
    the rounded n-th largest), and only the few entries at or above it are sorted exactly.
    Work: O(n x sides x e) elementwise. Memory: ~3 float32 arrays of e + the kept entries."""
    exact = score if callable(score) else score.__getitem__
    s32 = rounded if rounded is not None else score.float()  # type: ignore[union-attr]
    thr = _nth_largest(s32, [g for g, _ in sides], d, n)
    groups, items, scores = [], [], []
    for g, x in sides:
        sel = torch.nonzero(s32 >= thr[g], as_tuple=True)[0]
        groups.append(g[sel])
        items.append(x[sel])
        scores.append(exact(sel).double())
    group, item, value = torch.cat(groups), torch.cat(items), torch.cat(scores)
    idx, grp, rank = best_per_group(group, [-value, item], n)
    ids = torch.full((d, n), -1, dtype=torch.int64)
    vals = torch.zeros((d, n), dtype=torch.float64)
    grp, rank = grp.cpu(), rank.cpu()
    ids[grp, rank] = item[idx].cpu()
    vals[grp, rank] = value[idx].cpu()
    return ids, vals


def _nth_largest(s: Float[Tensor, " e"], groups: list[Tensor], d: int, n: int) -> Tensor:
    """Per group, the n-th largest of its entries' values counted with multiplicity (-inf where
    a group has fewer than n entries). Round r finds each group's largest value below the last
    round's; a group is done once n entries are at or above it."""
    dev = s.device
    neg_inf = torch.tensor(float("-inf"), device=dev)
    upper = torch.full((d,), float("inf"), device=dev)
    thr = torch.full((d,), float("-inf"), device=dev)
    done = torch.zeros(d, dtype=torch.bool, device=dev)
    for _ in range(n):
        best = torch.full((d,), float("-inf"), device=dev)
        for g in groups:
            best.scatter_reduce_(0, g, torch.where(s < upper[g], s, neg_inf), "amax")
        count = torch.zeros(d, dtype=torch.int32, device=dev)
        for g in groups:
            count.index_add_(0, g, (s >= best[g]).int())
        newly = (count >= n) & ~done & (best > neg_inf)
        thr = torch.where(newly, best, thr)
        done |= newly
        upper = best
        if bool((done | (best == neg_inf)).all()):
            break
    return thr
