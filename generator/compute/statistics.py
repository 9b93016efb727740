"""Statistics stage: streaming, exact, mergeable per-latent state (definitions in docs/STATISTICS.md).

Two passes over the corpus, because the histogram and the interval samples are defined on
(0, max] and max is only known once every position has been seen:

    pass 1  count, sum, max, top-k sequences, top tokens, co-activation,  (Pass1State)
            activation totals at BOS and at first positions
    pass 2  activation histogram, interval counts, interval samples        (Pass2State, needs max)

The dense part of every state is O(d_sae * (k + n_bins + n_intervals * m)), independent of corpus
length; top tokens and co-activation are exact sparse totals (generator.compute.sparse.SparseSums) sized by
the distinct (latent, token) and (latent, latent) pairs that actually occur, never d_vocab x d_sae
or d_sae^2. Every state has `merge`, so a corpus split into shards (one per GPU under torchrun)
gives exactly the same result as one pass. Ties are broken by the lower sequence index (top tokens
and neighbours: the lower id), so results do not depend on batch size or shard boundaries. Each
batch costs O(active entries + co-active pairs + batch x d_sae), never O(d_sae) sorts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from generator.compute.sparse import SparseSums, best_per_group, coactive_pairs, coalesce, top_per_group

log = logging.getLogger(__name__)
_MASK32 = 0xFFFFFFFF
_SEQ_BITS = 31  # sample keys are (hash32 << 31) | seq, so sequences must be < 2**31
EMPTY_KEY = torch.iinfo(torch.int64).max


# ----------------------------------------------------------------------------------------------
# definitions shared by the engine and its tests


def mix32(x: Tensor) -> Tensor:
    """A 32-bit integer mix (Chris Wellons' 'lowbias'-style constants kept < 2**27 so products fit
    in int64 on every device). Input and output are int64 tensors in [0, 2**32)."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def sample_keys(seed: int, seqs: Int[Tensor, " n"], latents: Int[Tensor, " n"]) -> Int[Tensor, " n"]:
    """The interval-sampling key of (sequence s, latent i): hash h(seed, s, i), then s breaks ties.
    Smaller keys are chosen first."""
    seed_t = torch.tensor(seed & _MASK32, dtype=torch.int64, device=seqs.device)
    h = mix32(mix32(mix32(seed_t) ^ (seqs.long() & _MASK32)) ^ (latents.long() & _MASK32))
    return (h << _SEQ_BITS) | seqs.long()


SUM_BITS = 24
"""Activation sums are integer sums of each value rounded to a multiple of 2**-24 (6e-8, below
float32's resolution at 1.0). Integer addition does not depend on order, so sums are bit-identical
for any batching, shard split or process count. Exact up to 2**39 (5.5e11) per latent or
(latent, token)."""


def to_fixed(values: Float[Tensor, " n"]) -> Int[Tensor, " n"]:
    """Values as integer multiples of 2**-SUM_BITS (scaling by a power of two is exact in
    float64, then round half to even)."""
    return torch.round(values.double() * (1 << SUM_BITS)).long()


def from_fixed(sums: Int[Tensor, "..."]) -> Float[Tensor, "..."]:
    return sums.double() / (1 << SUM_BITS)


def bin_index(values: Float[Tensor, " n"], max_act: Float[Tensor, " n"], n: int) -> Int[Tensor, " n"]:
    """Bin j of n equal-width bins of (0, max] holding value v > 0: (j*max/n, (j+1)*max/n].
    Computed as ceil(v / max * n) - 1 in float32, the same formula in every reference."""
    t = values.float() / max_act.float()
    return (torch.ceil(t * n).long() - 1).clamp_(0, n - 1)


def first_positions(mask: Bool[Tensor, "batch seq"]) -> Bool[Tensor, "batch seq"]:
    """First positions: included positions (mask True) right after an excluded (BOS) one."""
    out = torch.zeros_like(mask)
    out[:, 1:] = mask[:, 1:] & ~mask[:, :-1]
    return out


# ----------------------------------------------------------------------------------------------
# grouped top-k merges, used for top examples, interval samples and their merges


def topk_merge(
    vals: Float[Tensor, " n"], seqs: Int[Tensor, " n"], latents: Int[Tensor, " n"], d: int, k: int
) -> tuple[Float[Tensor, "d k"], Int[Tensor, "d k"]]:
    """Per latent, the k entries with the largest value, ties to the lower sequence index."""
    idx, group, rank = best_per_group(latents, [-vals, seqs], k)
    top_vals = torch.full((d, k), float("-inf"), device=vals.device)
    top_seqs = torch.full((d, k), -1, dtype=torch.int64, device=vals.device)
    top_vals[group, rank] = vals[idx]
    top_seqs[group, rank] = seqs[idx]
    return top_vals, top_seqs


def _flatten_table(table: Tensor, empty: Tensor | float | int) -> tuple[Tensor, Tensor]:
    """(row index, value) of the non-empty cells of a [rows, width] table."""
    rows, cols = torch.nonzero(table != empty, as_tuple=True)
    return rows, table[rows, cols]


# ----------------------------------------------------------------------------------------------
# a batch as triplets


@dataclass(frozen=True)
class SparseBatch:
    """One batch's activations as triplets of its active entries (a > 0), ordered by position
    (row, col) and then latent. SAE activations are sparse (L0 of tens out of thousands), so
    every update costs O(active entries), not O(positions x d_sae); the engine can also keep
    these from pass 1 to feed pass 2 and the examples."""

    row: Int[Tensor, " nnz"]
    """sequence row within the batch."""
    col: Int[Tensor, " nnz"]
    """position within the sequence."""
    latent: Int[Tensor, " nnz"]
    value: Float[Tensor, " nnz"]
    token: Int[Tensor, " nnz"]
    """token id at the entry's position (for top tokens)."""
    seq_ids: Int[Tensor, " batch"]
    """global sequence index of each row."""
    ctx: int
    n_included: int
    """included (non-excluded) positions in the batch: its share of N."""
    first: Bool[Tensor, " nnz"] | None = None
    """whether each entry is at a first position (an included position right after a BOS), for
    pass 1's first-position totals; None once compacted (pass 2 and the examples do not use it)."""
    bos_latent: Int[Tensor, " nb"] | None = None
    bos_value: Float[Tensor, " nb"] | None = None
    """the active entries at the excluded (BOS) positions, for pass 1's BOS totals only; None
    when those positions were not encoded (and once compacted)."""
    loss: Float[Tensor, "batch seq"] | None = None
    """the clean next-token loss at each position (NaN at the last and at excluded targets),
    when the engine was asked for it (the corpus view's); kept when compacted."""

    @classmethod
    def from_dense(cls, acts: Float[Tensor, "batch seq d_sae"], mask: Bool[Tensor, "batch seq"],
                   seq_ids: Int[Tensor, " batch"], tokens: Int[Tensor, "batch seq"]) -> SparseBatch:
        """From activations at every position: excluded positions (mask False: BOS) count only
        in the BOS totals."""
        rows, cols = torch.nonzero(mask, as_tuple=True)
        batch = cls.from_included(acts[rows, cols], rows, cols, seq_ids, tokens[rows, cols],
                                  acts.shape[1])
        excluded = acts[~mask]
        idx, latent = torch.nonzero(excluded > 0, as_tuple=True)
        return replace(batch, first=first_positions(mask)[batch.row, batch.col],
                       bos_latent=latent, bos_value=excluded[idx, latent].float())

    @classmethod
    def from_included(cls, acts: Float[Tensor, "n d_sae"], rows: Int[Tensor, " n"],
                      cols: Int[Tensor, " n"], seq_ids: Int[Tensor, " batch"],
                      tokens: Int[Tensor, " n"], ctx: int) -> SparseBatch:
        """From activations at the included positions (rows[j], cols[j]) only."""
        idx, latent = torch.nonzero(acts > 0, as_tuple=True)
        return cls(rows[idx], cols[idx], latent, acts[idx, latent].float(), tokens[idx].long(),
                   seq_ids.to(acts.device).long(), ctx, len(rows))

    def compact(self) -> SparseBatch:
        """On the host in the narrowest types (18 bytes per entry), for caching between passes
        (without pass 1's first-position and BOS entries)."""
        return replace(self, first=None, bos_latent=None, bos_value=None,
                       row=self.row.to("cpu", torch.int32), col=self.col.to("cpu", torch.int16),
                       latent=self.latent.to("cpu", torch.int32), value=self.value.cpu(),
                       token=self.token.to("cpu", torch.int32), seq_ids=self.seq_ids.cpu(),
                       loss=None if self.loss is None else self.loss.cpu())

    @property
    def compact_nbytes(self) -> int:
        return (18 * len(self.value) + 8 * len(self.seq_ids)
                + (0 if self.loss is None else 4 * self.loss.numel()))

    def widen(self, device: torch.device | str) -> SparseBatch:
        """Back from `compact`: int64 indices on `device`."""
        return replace(self, row=self.row.to(device, torch.int64),
                       col=self.col.to(device, torch.int64),
                       latent=self.latent.to(device, torch.int64), value=self.value.to(device),
                       token=self.token.to(device, torch.int64),
                       seq_ids=self.seq_ids.to(device, torch.int64))

    def seq_max(self, d: int) -> Float[Tensor, "batch d_sae"]:
        """Per-sequence max of each latent (0 where it never fires in that sequence)."""
        out = torch.zeros(len(self.seq_ids) * d, device=self.value.device)
        out.scatter_reduce_(0, self.row * d + self.latent, self.value, "amax")
        return out.view(len(self.seq_ids), d)


# ----------------------------------------------------------------------------------------------
# pass 1


@dataclass
class Pass1State:
    """Everything that does not depend on the final max.

    Memory: d_sae * (36 + 12 k) bytes for the dense per-latent part, plus 24 bytes per distinct
    active (latent, token) pair for top tokens and 16 bytes per distinct co-active latent pair
    (SparseSums, each bounded by the active entries seen and never d_vocab x d_sae or d_sae^2).
    One update's temporaries: batch x d_sae x 4 bytes (per-sequence max) plus O(active entries)
    plus one chunk of co-active pairs (`pair_chunk` x ~32 bytes)."""

    n_tokens: int
    """N, included positions seen."""
    n_active: Int[Tensor, " d_sae"]
    sum_fixed: Int[Tensor, " d_sae"]
    """total activation in fixed point (see to_fixed); `sum_act` is its float64 value."""
    bos_fixed: Int[Tensor, " d_sae"]
    """total activation at the excluded (BOS) positions, in fixed point: BOS positions count
    nowhere else."""
    first_fixed: Int[Tensor, " d_sae"]
    """total activation at first positions (included positions right after a BOS, so also part of
    sum_fixed), in fixed point."""
    max_act: Float[Tensor, " d_sae"]
    top_vals: Float[Tensor, "d_sae k"]
    """per-sequence max of the top-k sequences, descending; -inf pads."""
    top_seqs: Int[Tensor, "d_sae k"]
    """their sequence indices; -1 pads."""
    d_vocab: int
    token_sums: SparseSums | None
    """total activation and active count per (latent, token), keyed latent * d_vocab + token
    (None: top tokens not computed)."""
    coact: SparseSums | None
    """positions where latents i < j are both active, keyed i * d_sae + j (None: not computed)."""
    pair_chunk: int = 1 << 22
    """co-active pairs expanded at once (bounds the update's temporaries)."""
    coact_max_pairs: int = 0
    """memory valve for co-activation (0: none): when the distinct co-active pairs exceed it, each
    latent keeps only its `coact_keep` most frequent partners so far (a bounded candidate set),
    and pass 2 recounts those candidate pairs exactly (Pass2State.coact_counts). Should exceed
    d_sae x coact_keep, what a pruned state holds at most."""
    coact_keep: int = 64
    coact_pruned: bool = False
    """whether the valve fired: co-activation neighbours are then the best of the candidates."""

    @classmethod
    def empty(cls, d_sae: int, k: int, device: torch.device | str, d_vocab: int = 0,
              coact: bool = False) -> Pass1State:
        """d_vocab > 0: accumulate top tokens; coact: count co-activations of all latent pairs."""
        def zeros(*shape: int, dtype: torch.dtype) -> Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(
            n_tokens=0,
            n_active=zeros(d_sae, dtype=torch.int64),
            sum_fixed=zeros(d_sae, dtype=torch.int64),
            bos_fixed=zeros(d_sae, dtype=torch.int64),
            first_fixed=zeros(d_sae, dtype=torch.int64),
            max_act=zeros(d_sae, dtype=torch.float32),
            top_vals=torch.full((d_sae, k), float("-inf"), device=device),
            top_seqs=torch.full((d_sae, k), -1, dtype=torch.int64, device=device),
            d_vocab=d_vocab,
            token_sums=SparseSums.empty(device) if d_vocab else None,
            coact=SparseSums.empty(device, with_sums=False) if coact else None,
        )

    @property
    def k(self) -> int:
        return int(self.top_vals.shape[1])

    @property
    def sum_act(self) -> Float[Tensor, " d_sae"]:
        return from_fixed(self.sum_fixed)

    @property
    def bos_act(self) -> Float[Tensor, " d_sae"]:
        return from_fixed(self.bos_fixed)

    @property
    def first_act(self) -> Float[Tensor, " d_sae"]:
        return from_fixed(self.first_fixed)

    @property
    def d_sae(self) -> int:
        return int(self.n_active.shape[0])

    def update(self, batch: SparseBatch) -> None:
        """Fold one batch in."""
        d = self.d_sae
        # allocation-heavy work first, in-place commits last: an out-of-memory error part way
        # leaves the state as it was, so the engine can retry the batch in halves
        touched, top_vals, top_seqs = self._merged_topk(batch.seq_max(d), batch.seq_ids)
        pairs = None
        if self.coact is not None:
            position = batch.row * batch.ctx + batch.col
            pairs = [_coalesced(p) for p in coactive_pairs(position, batch.latent, d,
                                                              self.pair_chunk)]
        fixed = to_fixed(batch.value)
        first = None if batch.first is None else (batch.latent[batch.first], fixed[batch.first])
        bos = None if batch.bos_latent is None or batch.bos_value is None else (
            batch.bos_latent, to_fixed(batch.bos_value))
        tokens = None
        if self.token_sums is not None:
            tokens = _coalesced(batch.latent * self.d_vocab + batch.token, fixed)
        batch_max = torch.zeros(d, device=batch.value.device).scatter_reduce_(
            0, batch.latent, batch.value, "amax")
        self.n_tokens += batch.n_included
        self.n_active.index_add_(0, batch.latent, torch.ones_like(batch.latent))
        self.sum_fixed.index_add_(0, batch.latent, fixed)
        if first is not None:
            self.first_fixed.index_add_(0, *first)
        if bos is not None:
            self.bos_fixed.index_add_(0, *bos)
        torch.maximum(self.max_act, batch_max, out=self.max_act)
        self.top_vals[touched], self.top_seqs[touched] = top_vals, top_seqs
        if self.token_sums is not None and tokens is not None:
            self.token_sums.pending.append(tokens)
        if self.coact is not None and pairs is not None:
            self.coact.pending.extend(pairs)
        try:
            self._compact_sparse()
        except torch.OutOfMemoryError:
            # the batch is committed (pending entries are kept intact): folding can wait, and the
            # engine must not retry this batch, which would count it twice
            log.warning("out of memory while folding sparse totals; will fold later")

    def _compact_sparse(self) -> None:
        if self.token_sums is not None:
            self.token_sums.fold_if_due()
        if self.coact is not None:
            self.coact.fold_if_due()
            # checked on the folded state only: forcing a fold whenever pending entries pushed
            # the total over the budget would re-sort the whole state at every batch
            if self.coact_max_pairs and len(self.coact.keys) > self.coact_max_pairs:
                self.prune_coact()

    def prune_coact(self) -> None:
        """Keep, for every latent, the pairs with its most frequent partners so far (a pair stays
        if either end keeps it). Counts of pairs dropped and seen again restart from zero, so the
        kept counts are only used to choose candidates; pass 2 recounts the candidates exactly."""
        assert self.coact is not None
        coact = self.coact.fold()
        d = self.d_sae
        keep = self.coact_keep
        i, j = coact.keys // d, coact.keys % d
        ids, _ = top_per_group(coact.counts.double(), [(i, j), (j, i)], d, keep)
        ids = ids.to(coact.keys.device)
        owner = torch.arange(d, device=ids.device)[:, None].expand_as(ids)
        chosen = ids >= 0
        a, b = owner[chosen], ids[chosen]
        kept = torch.unique(torch.minimum(a, b) * d + torch.maximum(a, b))
        at = torch.searchsorted(coact.keys, kept)
        self.coact = SparseSums(False, kept, None, coact.counts[at], coact.min_fold)
        if not self.coact_pruned:
            log.warning("co-activation: more than %d distinct co-active latent pairs; keeping each "
                        "latent's %d most frequent partners as candidates (recounted exactly in "
                        "pass 2)", self.coact_max_pairs, keep)
        self.coact_pruned = True

    def _merged_topk(self, seq_max: Float[Tensor, "batch d_sae"],
                     seq_ids: Int[Tensor, " batch"]) -> tuple[Tensor, Tensor, Tensor]:
        """(latents whose top k may change, their new top-k values and sequences). Only sequences
        at least as high as a latent's current k-th best can enter (>=, not >: a tie may still
        win on a lower sequence index), and only those latents' rows are re-sorted, so the cost
        follows the batch's candidates, not d_sae."""
        threshold = self.top_vals[:, -1].clamp_min(0.0)
        b, latent = torch.nonzero((seq_max > 0) & (seq_max >= threshold), as_tuple=True)
        touched, local = torch.unique(latent, sorted=True, return_inverse=True)
        old_vals, old_seqs = self.top_vals[touched], self.top_seqs[touched]
        kept = old_seqs != -1
        old_local = torch.nonzero(kept, as_tuple=True)[0]
        top_vals, top_seqs = topk_merge(
            torch.cat([old_vals[kept], seq_max[b, latent].float()]),
            torch.cat([old_seqs[kept], seq_ids.to(seq_max.device).long()[b]]),
            torch.cat([old_local, local]),
            len(touched), self.k,
        )
        return touched, top_vals, top_seqs

    def merge(self, other: Pass1State) -> Pass1State:
        """The state of the union of two disjoint parts of the corpus."""
        cat_vals = torch.cat([self.top_vals, other.top_vals], 1)
        cat_seqs = torch.cat([self.top_seqs, other.top_seqs], 1)
        keep = cat_seqs != -1
        latent = torch.nonzero(keep, as_tuple=True)[0]
        top_vals, top_seqs = topk_merge(cat_vals[keep], cat_seqs[keep], latent, self.d_sae, self.k)
        return Pass1State(
            n_tokens=self.n_tokens + other.n_tokens,
            n_active=self.n_active + other.n_active,
            sum_fixed=self.sum_fixed + other.sum_fixed,
            bos_fixed=self.bos_fixed + other.bos_fixed,
            first_fixed=self.first_fixed + other.first_fixed,
            max_act=torch.maximum(self.max_act, other.max_act),
            top_vals=top_vals,
            top_seqs=top_seqs,
            d_vocab=self.d_vocab,
            token_sums=_merge_opt(self.token_sums, other.token_sums),
            coact=_merge_opt(self.coact, other.coact),
            pair_chunk=self.pair_chunk,
            coact_max_pairs=self.coact_max_pairs,
            coact_keep=self.coact_keep,
            coact_pruned=self.coact_pruned or other.coact_pruned,
        )

    def state_dict(self) -> dict[str, object]:
        """Tensors (on the host) and plain numbers, for a checkpoint; sparse totals folded."""
        def sparse(s: SparseSums | None) -> list[Tensor | None] | None:
            return None if s is None else [s.fold().keys.cpu(), None if s.sums is None
                                           else s.sums.cpu(), s.counts.cpu()]

        return {"n_tokens": self.n_tokens, "n_active": self.n_active.cpu(),
                "sum_fixed": self.sum_fixed.cpu(), "bos_fixed": self.bos_fixed.cpu(),
                "first_fixed": self.first_fixed.cpu(), "max_act": self.max_act.cpu(),
                "top_vals": self.top_vals.cpu(), "top_seqs": self.top_seqs.cpu(),
                "d_vocab": self.d_vocab, "token_sums": sparse(self.token_sums),
                "coact": sparse(self.coact), "pair_chunk": self.pair_chunk,
                "coact_max_pairs": self.coact_max_pairs, "coact_keep": self.coact_keep,
                "coact_pruned": self.coact_pruned}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any], device: torch.device | str) -> Pass1State:
        def sparse(parts: list[Tensor | None] | None, with_sums: bool) -> SparseSums | None:
            if parts is None:
                return None
            keys, sums, counts = (None if t is None else t.to(device) for t in parts)
            assert keys is not None and counts is not None
            return SparseSums(with_sums, keys, sums, counts)

        return cls(n_tokens=int(d["n_tokens"]), n_active=d["n_active"].to(device),
                   sum_fixed=d["sum_fixed"].to(device), bos_fixed=d["bos_fixed"].to(device),
                   first_fixed=d["first_fixed"].to(device), max_act=d["max_act"].to(device),
                   top_vals=d["top_vals"].to(device), top_seqs=d["top_seqs"].to(device),
                   d_vocab=int(d["d_vocab"]), token_sums=sparse(d["token_sums"], True),
                   coact=sparse(d["coact"], False), pair_chunk=int(d["pair_chunk"]),
                   coact_max_pairs=int(d["coact_max_pairs"]), coact_keep=int(d["coact_keep"]),
                   coact_pruned=bool(d["coact_pruned"]))

    @property
    def nbytes(self) -> int:
        """Bytes held by the state (what stays between batches)."""
        dense = sum(t.numel() * t.element_size() for t in (self.n_active, self.sum_fixed,
                                                           self.bos_fixed, self.first_fixed,
                                                           self.max_act, self.top_vals,
                                                           self.top_seqs))
        return dense + sum(s.nbytes for s in (self.token_sums, self.coact) if s is not None)


def _coalesced(keys: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
    return coalesce(keys, values, torch.ones_like(keys))


def _merge_opt(a: SparseSums | None, b: SparseSums | None) -> SparseSums | None:
    return None if a is None or b is None else a.merge(b)


def _add_opt(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return None if a is None or b is None else a + b


# ----------------------------------------------------------------------------------------------
# pass 2


@dataclass
class Pass2State:
    """Histogram and interval samples on (0, max], max fixed by pass 1 over the whole corpus."""

    max_act: Float[Tensor, " d_sae"]
    hist: Int[Tensor, "d_sae n_bins"]
    interval_counts: Int[Tensor, "d_sae n_intervals"]
    sample_keys: Int[Tensor, "d_sae n_intervals m"]
    """smallest sample keys per interval, ascending; EMPTY_KEY pads. seq = key & (2**31 - 1)."""
    seed: int
    coact_keys: Int[Tensor, " pairs"] | None = None
    """candidate co-active pairs (i * d_sae + j, i < j, sorted) to recount exactly, when pass 1's
    co-activation valve fired (Pass1State.coact_pruned); None otherwise."""
    coact_counts: Int[Tensor, " pairs"] | None = None
    """positions where both latents of each candidate pair are active."""
    pair_chunk: int = 1 << 22

    @classmethod
    def empty(cls, max_act: Tensor, n_bins: int, n_intervals: int, m: int, seed: int,
              coact_keys: Tensor | None = None) -> Pass2State:
        """coact_keys: candidate pairs to recount (see the field)."""
        d, dev = max_act.shape[0], max_act.device
        return cls(
            max_act=max_act,
            hist=torch.zeros((d, n_bins), dtype=torch.int64, device=dev),
            interval_counts=torch.zeros((d, n_intervals), dtype=torch.int64, device=dev),
            sample_keys=torch.full((d, n_intervals, m), EMPTY_KEY, dtype=torch.int64, device=dev),
            seed=seed,
            coact_keys=None if coact_keys is None else coact_keys.to(dev),
            coact_counts=None if coact_keys is None else torch.zeros(
                len(coact_keys), dtype=torch.int64, device=dev),
        )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        d, n_int, m = self.sample_keys.shape
        return d, self.hist.shape[1], n_int, m

    def update(self, batch: SparseBatch) -> None:
        """Fold one batch in: O(active entries + batch x d_sae), no pass over the whole table."""
        d, n_bins, n_int, m = self.shape
        bins = batch.latent * n_bins + bin_index(batch.value, self.max_act[batch.latent], n_bins)
        seq_max = batch.seq_max(d)
        b, latent = torch.nonzero(seq_max > 0, as_tuple=True)
        group = latent * n_int + bin_index(seq_max[b, latent], self.max_act[latent], n_int)
        keys = sample_keys(self.seed, batch.seq_ids.to(group.device)[b], latent)
        # only keys below their group's current m-th smallest can enter it
        flat = self.sample_keys.view(d * n_int, m)
        better = keys < flat[group, -1]
        touched, rows = self._smallest_with(group[better], keys[better])
        hits = self._candidate_hits(batch) if self.coact_keys is not None else None
        # commit only after every allocation succeeded (see Pass1State.update)
        self.hist.view(-1).index_add_(0, bins, torch.ones_like(bins))
        self.interval_counts.view(-1).index_add_(0, group, torch.ones_like(group))
        flat[touched] = rows
        if self.coact_counts is not None and hits is not None:
            self.coact_counts.index_add_(0, hits, torch.ones_like(hits))

    def _candidate_hits(self, batch: SparseBatch) -> Int[Tensor, " hits"]:
        """Index into coact_keys of every co-active pair of the batch that is a candidate."""
        assert self.coact_keys is not None
        position = batch.row * batch.ctx + batch.col
        parts = [self.coact_keys[:0]]
        if len(self.coact_keys) == 0:
            return parts[0]
        for pairs in coactive_pairs(position, batch.latent, self.shape[0], self.pair_chunk):
            at = torch.searchsorted(self.coact_keys, pairs).clamp_(max=len(self.coact_keys) - 1)
            parts.append(at[self.coact_keys[at] == pairs])
        return torch.cat(parts)

    def _smallest_with(self, group: Int[Tensor, " n"],
                       keys: Int[Tensor, " n"]) -> tuple[Tensor, Tensor]:
        """(groups touched, their rows of the sample-key table with the extra (group, key)
        candidates folded in). Cost follows the candidates, not the table's size."""
        m = self.shape[3]
        flat = self.sample_keys.view(-1, m)
        touched, local = torch.unique(group, sorted=True, return_inverse=True)
        old_local, old_keys = _flatten_table(flat[touched], EMPTY_KEY)
        all_keys = torch.cat([old_keys, keys])
        idx, grp, rank = best_per_group(torch.cat([old_local, local]), [all_keys], m)
        rows = torch.full((len(touched), m), EMPTY_KEY, dtype=torch.int64, device=flat.device)
        rows[grp, rank] = all_keys[idx]
        return touched, rows

    def merge(self, other: Pass2State) -> Pass2State:
        merged = replace(self, hist=self.hist + other.hist,
                         interval_counts=self.interval_counts + other.interval_counts,
                         sample_keys=self.sample_keys.clone(),
                         coact_counts=_add_opt(self.coact_counts, other.coact_counts))
        merged.fold_samples_(other.sample_keys)
        return merged

    def fold_samples_(self, sample_keys: Int[Tensor, "d_sae n_intervals m"]) -> None:
        """Fold another part's sample keys into this state's, in place."""
        m = self.shape[3]
        group, keys = _flatten_table(sample_keys.reshape(-1, m), EMPTY_KEY)
        touched, rows = self._smallest_with(group, keys)
        self.sample_keys.view(-1, m)[touched] = rows

    def state_dict(self) -> dict[str, object]:
        """Tensors (on the host) and plain numbers, for a checkpoint."""
        def host(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.cpu()

        return {"max_act": self.max_act.cpu(), "hist": self.hist.cpu(),
                "interval_counts": self.interval_counts.cpu(),
                "sample_keys": self.sample_keys.cpu(), "seed": self.seed,
                "coact_keys": host(self.coact_keys), "coact_counts": host(self.coact_counts),
                "pair_chunk": self.pair_chunk}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any], device: torch.device | str) -> Pass2State:
        def dev(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return cls(max_act=d["max_act"].to(device), hist=d["hist"].to(device),
                   interval_counts=d["interval_counts"].to(device),
                   sample_keys=d["sample_keys"].to(device), seed=int(d["seed"]),
                   coact_keys=dev(d["coact_keys"]), coact_counts=dev(d["coact_counts"]),
                   pair_chunk=int(d["pair_chunk"]))

    def sample_seqs(self) -> Int[Tensor, "d_sae n_intervals m"]:
        seqs = self.sample_keys & ((1 << _SEQ_BITS) - 1)
        return torch.where(self.sample_keys == EMPTY_KEY, -1, seqs)

