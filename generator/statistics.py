"""Statistics stage: streaming, exact, mergeable per-latent state (definitions in DESIGN §4).

Two passes over the corpus, because the histogram and the interval samples are defined on
(0, max] and max is only known once every position has been seen:

    pass 1  count, sum, max, top-k sequences, top tokens, co-activation   (Pass1State)
    pass 2  activation histogram, interval counts, interval samples        (Pass2State, needs max)

Every state is O(d_sae * (k + n_bins + ...)) (plus d_vocab x d_sae for top tokens and d_sae^2 for
exact co-activation), independent of corpus length, and has `merge`, so a corpus split into shards
(one per GPU under torchrun) gives exactly the same result as one pass. Ties are broken by the lower
sequence index, so results do not depend on batch size or shard boundaries.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

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


def bin_index(values: Float[Tensor, " n"], max_act: Float[Tensor, " n"], n: int) -> Int[Tensor, " n"]:
    """Bin j of n equal-width bins of (0, max] holding value v > 0: (j*max/n, (j+1)*max/n].
    Computed as ceil(v / max * n) - 1 in float32, the same formula in every reference."""
    t = values.float() / max_act.float()
    return (torch.ceil(t * n).long() - 1).clamp_(0, n - 1)


# ----------------------------------------------------------------------------------------------
# grouped top-k, used for top examples, interval samples and their merges


def _rank_in_groups(groups: Int[Tensor, " n"]) -> Int[Tensor, " n"]:
    """Position of each element within its run of equal values (groups must be sorted)."""
    first = torch.searchsorted(groups, groups, right=False)
    return torch.arange(len(groups), device=groups.device) - first


def _best_per_group(
    groups: Int[Tensor, " n"], order_keys: list[Tensor], keep: int
) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"], Int[Tensor, " n"]]:
    """Sort elements by (group, *order_keys) ascending and keep the first `keep` of each group.
    Returns (indices of kept elements into the inputs, their group, their rank in the group)."""
    perm = torch.arange(len(groups), device=groups.device)
    for key in reversed([groups, *order_keys]):  # stable sorts, least significant key first
        perm = perm[torch.sort(key[perm], stable=True).indices]
    sorted_groups = groups[perm]
    rank = _rank_in_groups(sorted_groups)
    kept = rank < keep
    return perm[kept], sorted_groups[kept], rank[kept]


def _topk_merge(
    vals: Float[Tensor, " n"], seqs: Int[Tensor, " n"], latents: Int[Tensor, " n"], d: int, k: int
) -> tuple[Float[Tensor, "d k"], Int[Tensor, "d k"]]:
    """Per latent, the k entries with the largest value, ties to the lower sequence index."""
    idx, group, rank = _best_per_group(latents, [-vals, seqs], k)
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
    """One batch's activations as triplets of its active entries (a > 0). SAE activations are
    sparse (L0 of tens out of thousands), so every update costs O(active entries), not
    O(positions x d_sae); the engine can also keep these from pass 1 to feed pass 2."""

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

    @classmethod
    def from_dense(cls, acts: Float[Tensor, "batch seq d_sae"], mask: Bool[Tensor, "batch seq"],
                   seq_ids: Int[Tensor, " batch"], tokens: Int[Tensor, "batch seq"]) -> SparseBatch:
        """From activations at every position; excluded positions (mask False) are dropped."""
        rows, cols = torch.nonzero(mask, as_tuple=True)
        return cls.from_included(acts[rows, cols], rows, cols, seq_ids, tokens[rows, cols],
                                 acts.shape[1])

    @classmethod
    def from_included(cls, acts: Float[Tensor, "n d_sae"], rows: Int[Tensor, " n"],
                      cols: Int[Tensor, " n"], seq_ids: Int[Tensor, " batch"],
                      tokens: Int[Tensor, " n"], ctx: int) -> SparseBatch:
        """From activations at the included positions (rows[j], cols[j]) only."""
        idx, latent = torch.nonzero(acts > 0, as_tuple=True)
        return cls(rows[idx], cols[idx], latent, acts[idx, latent].float(), tokens[idx].long(),
                   seq_ids.to(acts.device).long(), ctx, len(rows))

    def to(self, device: torch.device | str) -> SparseBatch:
        moved = {f: getattr(self, f).to(device) for f in ("row", "col", "latent", "value", "token",
                                                          "seq_ids")}
        return replace(self, **moved)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.row, self.col, self.latent,
                                                          self.value, self.token))

    def seq_max(self, d: int) -> Float[Tensor, "batch d_sae"]:
        """Per-sequence max of each latent (0 where it never fires in that sequence)."""
        out = torch.zeros(len(self.seq_ids) * d, device=self.value.device)
        out.scatter_reduce_(0, self.row * d + self.latent, self.value, "amax")
        return out.view(len(self.seq_ids), d)


# ----------------------------------------------------------------------------------------------
# pass 1


@dataclass
class Pass1State:
    """Everything that does not depend on the final max."""

    n_tokens: int
    """N, included positions seen."""
    n_active: Int[Tensor, " d_sae"]
    sum_act: Float[Tensor, " d_sae"]
    """float64 accumulator."""
    max_act: Float[Tensor, " d_sae"]
    top_vals: Float[Tensor, "d_sae k"]
    """per-sequence max of the top-k sequences, descending; -inf pads."""
    top_seqs: Int[Tensor, "d_sae k"]
    """their sequence indices; -1 pads."""
    token_sum: Float[Tensor, "d_vocab d_sae"] | None
    """total activation per (vocab token, latent), for top tokens (None: not computed)."""
    token_count: Int[Tensor, "d_vocab d_sae"] | None
    coact: Int[Tensor, "d_sae n_cand"] | None
    """positions where latent i and its candidate j are both active (None: not computed)."""
    coact_ids: Int[Tensor, "d_sae n_cand"] | None = None
    """candidate latents of each row of `coact`; None means every latent (exact d_sae^2)."""

    @classmethod
    def empty(cls, d_sae: int, k: int, device: torch.device | str, d_vocab: int = 0,
              coact: bool = False, coact_ids: Tensor | None = None) -> Pass1State:
        """coact: count co-activations for all pairs, or with coact_ids [d_sae, n_cand] only for
        those candidate pairs (bounded memory for SAEs too large for a d_sae^2 matrix)."""
        def zeros(*shape: int, dtype: torch.dtype) -> Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(
            n_tokens=0,
            n_active=zeros(d_sae, dtype=torch.int64),
            sum_act=zeros(d_sae, dtype=torch.float64),
            max_act=zeros(d_sae, dtype=torch.float32),
            top_vals=torch.full((d_sae, k), float("-inf"), device=device),
            top_seqs=torch.full((d_sae, k), -1, dtype=torch.int64, device=device),
            token_sum=zeros(d_vocab, d_sae, dtype=torch.float32) if d_vocab else None,
            token_count=zeros(d_vocab, d_sae, dtype=torch.int32) if d_vocab else None,
            coact=zeros(d_sae, d_sae if coact_ids is None else coact_ids.shape[1],
                        dtype=torch.int32) if coact else None,
            coact_ids=coact_ids.to(device) if coact and coact_ids is not None else None,
        )

    @property
    def k(self) -> int:
        return int(self.top_vals.shape[1])

    def update(self, batch: SparseBatch) -> None:
        """Fold one batch in."""
        d = self.n_active.shape[0]
        # allocation-heavy work first, in-place commits last: an out-of-memory error part way
        # leaves the state as it was, so the engine can retry the batch in halves
        top_vals, top_seqs = self._merged_topk(batch.seq_max(d), batch.seq_ids)
        pair_counts = None
        if self.coact is not None:
            pair_counts = _coactivation_counts(batch, d, self.coact_ids)
        n_active = torch.bincount(batch.latent, minlength=d)
        batch_sum = torch.bincount(batch.latent, weights=batch.value.double(), minlength=d)
        batch_max = torch.zeros(d, device=batch.value.device).scatter_reduce_(
            0, batch.latent, batch.value, "amax")
        self.n_tokens += batch.n_included
        self.n_active += n_active
        self.sum_act += batch_sum
        self.max_act = torch.maximum(self.max_act, batch_max)
        self.top_vals, self.top_seqs = top_vals, top_seqs
        if self.token_sum is not None and self.token_count is not None:
            key = batch.token * d + batch.latent
            self.token_sum.view(-1).index_add_(0, key, batch.value)
            self.token_count.view(-1).index_add_(0, key, torch.ones_like(key, dtype=torch.int32))
        if self.coact is not None and pair_counts is not None:
            self.coact += pair_counts

    def _merged_topk(self, seq_max: Float[Tensor, "batch d_sae"],
                     seq_ids: Int[Tensor, " batch"]) -> tuple[Tensor, Tensor]:
        # only sequences at least as high as a latent's current k-th best can enter its top k
        # (>=, not >: a tie may still win on a lower sequence index), so sorts stay small
        threshold = self.top_vals[:, -1].clamp_min(0.0)
        b, latent = torch.nonzero((seq_max > 0) & (seq_max >= threshold), as_tuple=True)
        kept = self.top_seqs != -1
        old_latent = torch.nonzero(kept, as_tuple=True)[0]
        old_vals, old_seqs = self.top_vals[kept], self.top_seqs[kept]
        return _topk_merge(
            torch.cat([old_vals, seq_max[b, latent].float()]),
            torch.cat([old_seqs, seq_ids.to(seq_max.device).long()[b]]),
            torch.cat([old_latent, latent]),
            seq_max.shape[1], self.k,
        )

    def merge(self, other: Pass1State) -> Pass1State:
        """The state of the union of two disjoint parts of the corpus."""
        cat_vals = torch.cat([self.top_vals, other.top_vals], 1)
        cat_seqs = torch.cat([self.top_seqs, other.top_seqs], 1)
        keep = cat_seqs != -1
        latent = torch.nonzero(keep, as_tuple=True)[0]
        top_vals, top_seqs = _topk_merge(cat_vals[keep], cat_seqs[keep], latent,
                                         self.top_vals.shape[0], self.k)
        return Pass1State(
            n_tokens=self.n_tokens + other.n_tokens,
            n_active=self.n_active + other.n_active,
            sum_act=self.sum_act + other.sum_act,
            max_act=torch.maximum(self.max_act, other.max_act),
            top_vals=top_vals,
            top_seqs=top_seqs,
            token_sum=_add_opt(self.token_sum, other.token_sum),
            token_count=_add_opt(self.token_count, other.token_count),
            coact=_add_opt(self.coact, other.coact),
            coact_ids=self.coact_ids,
        )


def _pair_counts(rows: Bool[Tensor, "positions r"], cols: Bool[Tensor, "positions c"]) -> Tensor:
    """[r, c] positions where both are active. 0/1 products are exact in bf16 and float32 with
    float32 accumulation while a batch has < 2**24 positions."""
    dtype = torch.bfloat16 if rows.device.type == "cuda" else torch.float32
    return (rows.to(dtype).T @ cols.to(dtype)).float().round_().int()


def _coactivation_counts(batch: SparseBatch, d: int, cand: Int[Tensor, "d_sae n_cand"] | None,
                         chunk: int = 4096) -> Int[Tensor, "d_sae n"]:
    """Positions where both latents are active: all pairs (cand None), or only each latent's
    candidates, a row chunk at a time so no d_sae^2 matrix is held."""
    positions = len(batch.seq_ids) * batch.ctx
    flat = batch.row * batch.ctx + batch.col
    if cand is None and batch.value.device.type == "cpu":
        # sparse x sparse: work ~ sum over positions of L0^2, far below the dense product
        ones = torch.ones(len(flat), device=flat.device)
        active = torch.sparse_coo_tensor(torch.stack([batch.latent, flat]), ones, (d, positions),
                                         is_coalesced=False, check_invariants=False).coalesce()
        with warnings.catch_warnings():  # torch calls its internal CSR path "beta" on every call
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse.mm(active, active.t()).to_dense().round_().int()
    dense = torch.zeros(positions, d, dtype=torch.bool, device=flat.device)
    dense[flat, batch.latent] = True
    if cand is None:
        return _pair_counts(dense, dense)
    parts = []
    for start in range(0, d, chunk):
        rows = slice(start, start + chunk)
        parts.append(_pair_counts(dense[:, rows], dense).gather(1, cand[rows]))
    return torch.cat(parts)


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

    @classmethod
    def empty(cls, max_act: Tensor, n_bins: int, n_intervals: int, m: int, seed: int) -> Pass2State:
        d, dev = max_act.shape[0], max_act.device
        return cls(
            max_act=max_act,
            hist=torch.zeros((d, n_bins), dtype=torch.int64, device=dev),
            interval_counts=torch.zeros((d, n_intervals), dtype=torch.int64, device=dev),
            sample_keys=torch.full((d, n_intervals, m), EMPTY_KEY, dtype=torch.int64, device=dev),
            seed=seed,
        )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        d, n_int, m = self.sample_keys.shape
        return d, self.hist.shape[1], n_int, m

    def update(self, batch: SparseBatch) -> None:
        d, n_bins, n_int, _ = self.shape
        bins = bin_index(batch.value, self.max_act[batch.latent], n_bins)
        hist = torch.bincount(batch.latent * n_bins + bins, minlength=d * n_bins).view(d, n_bins)

        seq_max = batch.seq_max(d)
        b, latent = torch.nonzero(seq_max > 0, as_tuple=True)
        interval = bin_index(seq_max[b, latent], self.max_act[latent], n_int)
        group = latent * n_int + interval
        counts = torch.bincount(group, minlength=d * n_int).view(d, n_int)
        keys = self._smallest_with(group, sample_keys(self.seed, batch.seq_ids[b], latent))
        # commit only after every allocation succeeded (see Pass1State.update)
        self.hist += hist
        self.interval_counts += counts
        self.sample_keys = keys

    def _smallest_with(self, group: Int[Tensor, " n"], keys: Int[Tensor, " n"]) -> Tensor:
        """The sample-key table with extra (group, key) candidates folded in."""
        d, _, n_int, m = self.shape
        flat = self.sample_keys.view(d * n_int, m)
        old_group, old_keys = _flatten_table(flat, EMPTY_KEY)
        all_keys = torch.cat([old_keys, keys])
        idx, grp, rank = _best_per_group(torch.cat([old_group, group]), [all_keys], m)
        out = torch.full_like(flat, EMPTY_KEY)
        out[grp, rank] = all_keys[idx]
        return out.view(d, n_int, m)

    def merge(self, other: Pass2State) -> Pass2State:
        merged = replace(self, hist=self.hist + other.hist,
                         interval_counts=self.interval_counts + other.interval_counts)
        d, _, n_int, m = self.shape
        other_group, other_keys = _flatten_table(other.sample_keys.view(d * n_int, m), EMPTY_KEY)
        merged.sample_keys = merged._smallest_with(other_group, other_keys)
        return merged

    def sample_seqs(self) -> Int[Tensor, "d_sae n_intervals m"]:
        seqs = self.sample_keys & ((1 << _SEQ_BITS) - 1)
        return torch.where(self.sample_keys == EMPTY_KEY, -1, seqs)


# ----------------------------------------------------------------------------------------------
# logit effects


@dataclass(frozen=True)
class LogitEffects:
    """d_i @ W_U per latent, summarised (numpy, on the host)."""

    pos_ids: Int[np.ndarray, "d_sae n"]
    pos_vals: Float[np.ndarray, "d_sae n"]
    neg_ids: Int[np.ndarray, "d_sae n"]
    neg_vals: Float[np.ndarray, "d_sae n"]
    hist: Int[np.ndarray, "d_sae bins"]
    lo: Float[np.ndarray, " d_sae"]
    hi: Float[np.ndarray, " d_sae"]


def logit_histogram(effects: Float[Tensor, "n d_vocab"], bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Equal-width histogram of each row over [row min, row max]: bin floor((x-lo)/(hi-lo)*bins),
    the maximum in the last bin. Returns (counts, lo, hi)."""
    lo, hi = effects.amin(1), effects.amax(1)
    width = (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
    idx = ((effects - lo[:, None]) / width[:, None] * bins).floor().long().clamp_(0, bins - 1)
    n = effects.shape[0]
    offsets = torch.arange(n, device=effects.device)[:, None] * bins
    counts = torch.bincount((idx + offsets).reshape(-1), minlength=n * bins).view(n, bins)
    return counts, lo, hi


@torch.inference_mode()
def logit_effects(
    directions: Float[Tensor, "d_sae d_model"], w_u: Float[Tensor, "d_model d_vocab"],
    n_top: int, bins: int, chunk: int = 1024,
) -> LogitEffects:
    parts: list[list[np.ndarray]] = [[] for _ in range(7)]
    n_top = min(n_top, w_u.shape[1])
    for start in range(0, directions.shape[0], chunk):
        effects = directions[start:start + chunk].float() @ w_u.float()
        pos = effects.topk(n_top, dim=1)
        neg = (-effects).topk(n_top, dim=1)
        counts, lo, hi = logit_histogram(effects, bins)
        for out, t in zip(parts, (pos.indices, pos.values, neg.indices, -neg.values, counts, lo, hi),
                          strict=True):
            out.append(t.cpu().numpy())
    cat = [np.concatenate(p) for p in parts]
    return LogitEffects(cat[0].astype(np.int32), cat[1], cat[2].astype(np.int32), cat[3],
                        cat[4].astype(np.int64), cat[5], cat[6])


# ----------------------------------------------------------------------------------------------
# neighbours and top tokens (from finished states)


def top_tokens(state: Pass1State, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per latent: the n vocab ids with the largest total activation (-1 pads), sums, counts."""
    if state.token_sum is None or state.token_count is None:
        return None
    n = min(n, state.token_sum.shape[0])
    vals, ids = _stable_top(state.token_sum.T, n)
    counts = state.token_count.T.gather(1, ids)
    ids = torch.where(vals > 0, ids, -1)
    return ids.int().cpu().numpy(), vals.cpu().numpy(), counts.long().cpu().numpy()


def _stable_top(scores: Float[Tensor, "rows cols"], n: int) -> tuple[Tensor, Tensor]:
    """Top n per row by value descending, ties to the lower column index (deterministic)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True)
    return order.values[:, :n], order.indices[:, :n]


def cosine_neighbours(w_dec: Float[Tensor, "d_sae d_in"], n: int,
                      chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    unit = w_dec.float() / w_dec.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    ids, vals = [], []
    for start in range(0, unit.shape[0], chunk):
        sim = unit[start:start + chunk] @ unit.T
        rows = torch.arange(sim.shape[0], device=sim.device)
        sim[rows, rows + start] = float("-inf")  # a latent is not its own neighbour
        v, i = _stable_top(sim, n)
        ids.append(i.int().cpu().numpy())
        vals.append(v.cpu().numpy())
    return np.concatenate(ids), np.concatenate(vals)


def coact_neighbours(state: Pass1State, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Top n latents by Jaccard of their active-position sets (-1 pads where Jaccard is 0),
    among all latents or among each latent's candidates."""
    if state.coact is None:
        return None
    d = state.coact.shape[0]
    ids = state.coact_ids if state.coact_ids is not None else \
        torch.arange(d, device=state.coact.device).expand(d, d)
    both = state.coact.double()
    n_active = state.n_active.double()
    union = n_active[:, None] + n_active[ids] - both
    jac = torch.where(union > 0, both / union.clamp_min(1), 0.0)
    jac[ids == torch.arange(d, device=ids.device)[:, None]] = -1.0  # not its own neighbour
    vals, cols = _stable_top(jac, n)
    nb = torch.where(vals > 0, ids.gather(1, cols), -1)
    return nb.int().cpu().numpy(), vals.clamp_min(0).float().cpu().numpy()
