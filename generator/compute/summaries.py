"""Per-latent summaries computed from the weights and from finished pass-1 states: logit effects,
decoder-cosine neighbours, top tokens and co-activation neighbours (definitions in
docs/STATISTICS.md).

Each works in blocks of rows sized by a byte budget, so no temporary is d_sae x d_vocab or
d_sae x d_sae; each docstring gives its peak memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from generator.compute.sparse import top_per_group, top_rows
from generator.compute.statistics import Pass1State, Pass2State, from_fixed

BLOCK_BYTES = 256 << 20
"""working-set budget of one block of a blocked product (scores and their sort keys)."""


def _block_rows(width: int, bytes_per_cell: int, budget: int = BLOCK_BYTES) -> int:
    return int(max(1, budget // max(1, width * bytes_per_cell)))


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
    n_top: int, bins: int, chunk: int = 0,
) -> LogitEffects:
    """d_i @ W_U per latent: top n_top positive and negative tokens and a histogram. Rows in
    blocks of `chunk` (0: from BLOCK_BYTES). Peak memory: chunk x d_vocab x ~20 bytes (effects,
    bin indices) + d_sae x (4 n_top + 8 bins) for the results."""
    parts: list[list[np.ndarray]] = [[] for _ in range(7)]
    n_top = min(n_top, w_u.shape[1])
    chunk = chunk or _block_rows(w_u.shape[1], 20)
    w_u = w_u.float()
    for start in range(0, directions.shape[0], chunk):
        effects = directions[start:start + chunk].float() @ w_u
        pos = effects.topk(n_top, dim=1)
        neg = (-effects).topk(n_top, dim=1)
        counts, lo, hi = logit_histogram(effects, bins)
        for out, t in zip(parts, (pos.indices, pos.values, neg.indices, -neg.values, counts, lo, hi),
                          strict=True):
            out.append(t.cpu().numpy())
    cat = [np.concatenate(p) for p in parts]
    return LogitEffects(cat[0].astype(np.int32), cat[1], cat[2].astype(np.int32), cat[3],
                        cat[4].astype(np.int64), cat[5], cat[6])


@torch.inference_mode()
def cosine_neighbours(w_dec: Float[Tensor, "d_sae d_in"], n: int, chunk: int = 0,
                      slack: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Top n latents by decoder cosine similarity (ties to the lower id), by a blocked product
    on w_dec's device. Peak memory: d_sae x d_in x 4 (unit rows) + chunk x d_sae x ~12 bytes
    (one block of similarities and its top-k), chunk from BLOCK_BYTES when 0."""
    unit = w_dec.float() / w_dec.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    d = unit.shape[0]
    chunk = chunk or _block_rows(d, 12)
    ids, vals = [], []
    for start in range(0, d, chunk):
        sim = unit[start:start + chunk] @ unit.T
        rows = torch.arange(sim.shape[0], device=sim.device)
        sim[rows, rows + start] = float("-inf")  # a latent is not its own neighbour
        v, i = top_rows(sim, n, slack)
        ids.append(i.int().cpu().numpy())
        vals.append(v.cpu().numpy())
    return np.concatenate(ids), np.concatenate(vals)


def top_tokens(state: Pass1State, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per latent: the n vocab ids with the largest total activation (ties to the lower id; -1
    pads), their sums and active counts. Peak memory: a few arrays over the distinct
    (latent, token) pairs (see top_per_group) + d_sae x n x 20 bytes."""
    return _top_pairs(state, n, by_token=False)


def token_latents(state: Pass1State, n: int) -> tuple[np.ndarray, ...] | None:
    """The search's token index: per vocab id that some latent fired on, the n latents with the
    largest total activation on it (ties to the lower id; -1 pads), their sums and active
    counts: (token ids [t], latents [t, n], sums [t, n], counts [t, n]). Peak memory: as
    top_tokens, with d_vocab x n x 20 bytes for the result."""
    out = _top_pairs(state, n, by_token=True)
    if out is None:
        return None
    ids, sums, counts = out
    present = np.flatnonzero(ids[:, 0] >= 0)
    return present.astype(np.int32), ids[present], sums[present], counts[present]


def _top_pairs(state: Pass1State, n: int,
               by_token: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Top n (latent, token) pairs by total activation per latent, or per token."""
    if state.token_sums is None:
        return None
    sums = state.token_sums.fold()
    assert sums.sums is not None
    latent, token = sums.keys // state.d_vocab, sums.keys % state.d_vocab
    side, groups = ((token, latent), state.d_vocab) if by_token else ((latent, token), state.d_sae)
    ids, vals = top_per_group(from_fixed(sums.sums), [side], groups, n)
    # the count of each chosen (latent, token): look its key up in the sorted keys
    chosen = ids >= 0
    group = torch.arange(groups)[:, None]
    keys = (ids * state.d_vocab + group) if by_token else (group * state.d_vocab + ids)
    counts = torch.zeros(ids.shape, dtype=torch.int64)
    counts[chosen] = sums.counts[torch.searchsorted(sums.keys, keys[chosen].to(sums.keys.device))].cpu()
    return ids.int().numpy(), vals.float().numpy(), counts.numpy()


def coact_neighbours(state: Pass1State, n: int,
                     recount: Pass2State | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Top n latents by Jaccard of their active-position sets, over all latent pairs (ties to the
    lower id; -1 pads where fewer latents ever co-fire); when pass 1's memory valve fired, over
    each latent's candidates, with the exact counts that pass 2 (`recount`) made of them.
    Peak memory: a few arrays over the distinct co-active pairs (see top_per_group) + d_sae x n x
    8 bytes."""
    if state.coact is None:
        return None
    coact = state.coact.fold()
    keys, counts = coact.keys, coact.counts
    if state.coact_pruned:
        if recount is None or recount.coact_keys is None or recount.coact_counts is None:
            raise ValueError("co-activation candidates need pass 2's exact recount")
        keys, counts = recount.coact_keys, recount.coact_counts
    d = state.d_sae
    i, j = keys // d, keys % d
    n_active = state.n_active

    def jaccard(at: Tensor) -> Tensor:
        both = counts[at].double()
        return both / (n_active[i[at]] + n_active[j[at]] - both)

    # float64 Jaccard a slice at a time, kept only as its float32 rounding
    rounded = torch.cat([jaccard(torch.arange(lo, min(lo + (1 << 22), len(keys)),
                                              device=keys.device)).float()
                         for lo in range(0, len(keys), 1 << 22)]) if len(keys) else \
        torch.zeros(0, device=keys.device)
    ids, vals = top_per_group(jaccard, [(i, j), (j, i)], d, n, rounded=rounded)
    return ids.int().numpy(), vals.float().numpy()
