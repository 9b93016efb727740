"""The corpus view's compute: what fires on each token of every sequence the site keeps.

Every sequence the store keeps (StoreData.seq_ids: those some example points to) is computed;
the site gives a page `corpus/<seq>.html`, like a prompt page (generator/site/views.py), to
each one that a shown example points to. The activations are pass 1's: the active entries the
statistics counted (Engine.entries_of: pass 1's cache, or its batch re-run), so the SAE is not
run again and the page shows the bits the statistics saw. The clean loss needs the model after
the hook, which the passes never run (they stop at the hook's block): the kept sequences run it
here, from the hook's block. For each sequence the store keeps
(generator.store.schema.CorpusView):

    n_latents   how many latents are active anywhere on it
    loss        the clean loss of predicting token t+1 at each position (NaN at the last
                position and where token t+1 is BOS)
    the table   the union of the CORPUS_LIST latents with the largest max activation and the
                CORPUS_LIST with the largest total activation over the sequence (ties to the
                lower id), with their active-position count, max and total
    entries     (position, latent, activation) for the CORPUS_TOP most active latents of every
                position (ties to the lower id), and for every active position of the table's
                latents

So a page's per-token lists and its table are exact, and it can colour the tokens by any table
latent. Δloss is not recomputed here: removing every active latent of every kept sequence would
cost one forward pass per (sequence, active latent), about 590 per demo sequence. The render
takes it from the examples' ablation, which used the same definition, for the latents whose
page shows the sequence.

The tables are computed for all kept sequences at once with array operations (sorts over the
entries, no loop over sequences).

Memory (one batch of B sequences of ctx positions, B the engine's batch size): the model's
activations up to the hook and after it for the clean loss (as pass 1 and the ablation); on the
host, every kept sequence's active entries, E = n_kept x ctx x L0 (6.3 M on the demo), at ~60
bytes each while the tables are made (the entries, their sort orders and group ids). Output on
the host: 16 bytes per kept entry (<= ctx x (CORPUS_TOP + 2 CORPUS_LIST) per sequence) + 24 per
table row + 4 x ctx. The render holds the same, plus a float32 Δloss per entry and a float64 total
per table row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float, Int

from generator.store.schema import CORPUS_LIST, CORPUS_TOP, CorpusView

if TYPE_CHECKING:
    from generator.compute.activations import HookedSAE
    from generator.compute.statistics import SparseBatch

log = logging.getLogger(__name__)


Entries = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(row in kept, position, latent, activation) of active entries, one array each."""

CHUNK_ENTRIES = 1 << 22
"""active entries whose tables are made at once (whole sequences; ~60 bytes each meanwhile)."""


def compute_corpus_view(hooked: HookedSAE, tokens: Int[np.ndarray, "n_kept ctx"],
                        kept: Int[np.ndarray, " n_kept"], entries: Iterable[SparseBatch],
                        bos_id: int, batch_size: int, quiet: bool = True) -> CorpusView:
    """The corpus view of the kept sequences `kept` (ascending global indices; `tokens` their
    rows), from `entries`, pass 1's active entries of batches that cover them in sequence order
    (Engine.entries_of; module docstring)."""
    loss = _clean_losses(hooked, tokens, bos_id, batch_size, quiet)
    ctx = tokens.shape[1] if tokens.ndim == 2 else 0
    parts = [_tables(*chunk, len(kept)) for chunk in _kept_entries(entries, kept, ctx)]

    def cat(name: str, dtype: type) -> np.ndarray:
        return (np.concatenate([p[name] for p in parts]).astype(dtype) if parts
                else np.zeros(0, dtype))

    out = CorpusView(
        loss=loss, n_latents=sum((p["n_latents"] for p in parts),
                                 np.zeros(len(kept), np.int64)).astype(np.int32),
        row=cat("row", np.int32), pos=cat("pos", np.int32), latent=cat("latent", np.int32),
        act=cat("act", np.float32), s_row=cat("s_row", np.int32),
        s_latent=cat("s_latent", np.int32), s_n_active=cat("s_n_active", np.int32),
        s_max_act=cat("s_max_act", np.float32), s_sum_act=cat("s_sum_act", np.float64))
    log.info("corpus view: %d sequences, %d entries, %d table rows", len(kept), len(out.row),
             len(out.s_row))
    return out


def _clean_losses(hooked: HookedSAE, tokens: Int[np.ndarray, "n ctx"], bos_id: int,
                  batch_size: int, quiet: bool) -> Float[np.ndarray, "n ctx"]:
    """The clean next-token loss at each position (NaN at the last position and where the target
    is excluded), B sequences at a time."""
    import torch
    from tqdm.auto import tqdm

    losses = []
    step = max(1, batch_size)
    bar = tqdm(total=len(tokens), desc="corpus view", unit="seq", disable=quiet)
    with torch.inference_mode():
        for lo in range(0, len(tokens), step):
            toks = torch.from_numpy(tokens[lo:lo + step]).to(hooked.device, torch.long)
            resid, hook_acts = hooked.run_to_hook(toks)
            mask = hooked.included(toks, hook_acts, bos_id)
            clean = hooked.losses(resid, toks, needed=mask[:, 1:])
            nan = torch.full((len(toks), 1), float("nan"), device=clean.device)
            losses.append(torch.cat([clean, nan], 1).float().cpu().numpy())
            bar.update(len(toks))
    bar.close()
    ctx = tokens.shape[1] if tokens.ndim == 2 else 0
    return np.concatenate(losses) if losses else np.zeros((0, ctx), np.float32)


def _kept_entries(entries: Iterable[SparseBatch], kept: Int[np.ndarray, " n_kept"],
                  ctx: int) -> Iterator[Entries]:
    """(row in `kept`, position, latent, activation) of the kept sequences' entries, ordered by
    row, position, latent, in chunks of whole sequences of about CHUNK_ENTRIES entries."""
    parts: list[Entries] = []
    size = 0
    for sparse in entries:
        seq = sparse.seq_ids.numpy()[sparse.row.numpy()]
        at = np.minimum(np.searchsorted(kept, seq), max(len(kept) - 1, 0))
        hit = kept[at] == seq if len(kept) else np.zeros(len(seq), bool)
        parts.append((at[hit].astype(np.int64), sparse.col.numpy()[hit].astype(np.int64),
                      sparse.latent.numpy()[hit].astype(np.int64),
                      sparse.value.numpy()[hit].astype(np.float32)))
        size += int(hit.sum())
        if size >= CHUNK_ENTRIES:  # a batch holds whole sequences: the chunk ends on one
            yield _in_order(parts, ctx)
            parts, size = [], 0
    if parts:
        yield _in_order(parts, ctx)


def _in_order(parts: list[Entries], ctx: int) -> Entries:
    row, pos, latent, act = (np.concatenate(x) for x in zip(*parts, strict=True))
    key = (row * max(ctx, 1) + pos) * (int(latent.max(initial=0)) + 1) + latent
    if len(key) > 1 and not (np.diff(key) > 0).all():  # batches come in order: rarely sorted here
        order = np.argsort(key, kind="stable")
        row, pos, latent, act = row[order], pos[order], latent[order], act[order]
    return row, pos, latent, act


def _tables(row: np.ndarray, pos: np.ndarray, latent: np.ndarray, act: np.ndarray,
            n_kept: int) -> dict[str, np.ndarray]:
    """The tables and kept entries (module docstring) of the sequences whose active entries these
    are (sorted by row, position, latent), in CorpusView's fields."""
    d = int(latent.max(initial=0)) + 1
    key = row * d + latent
    by_group = np.argsort(key, kind="stable")  # (row, latent) groups, each in position order
    sorted_key = key[by_group]
    new_group = np.concatenate(([True], sorted_key[1:] != sorted_key[:-1]))[:len(key)]
    starts = np.flatnonzero(new_group)
    groups = sorted_key[starts]
    which = np.empty(len(key), dtype=np.int64)  # each entry's group
    which[by_group] = np.cumsum(new_group) - 1
    g_row, g_latent = groups // d, groups % d
    n_active = np.diff(np.append(starts, len(key)))
    # entries in order, so each group's float64 total adds its positions in order, as before
    sum_act = np.bincount(which, weights=act.astype(np.float64), minlength=len(groups))
    max_act = np.maximum.reduceat(act[by_group], starts) if len(key) else act[:0]
    table = np.zeros(len(groups), dtype=bool)
    for score in (max_act, sum_act):  # groups come by latent within a row: ties to the lower id
        table |= _rank_in_runs(g_row, score) < CORPUS_LIST
    # per position, its CORPUS_TOP most active latents (entries come by latent within a position)
    position = row * (int(pos.max(initial=0)) + 1) + pos
    keep = (_rank_in_runs(position, act) < CORPUS_TOP) | table[which]
    return {"n_latents": np.bincount(g_row, minlength=n_kept), "row": row[keep],
            "pos": pos[keep], "latent": latent[keep], "act": act[keep], "s_row": g_row[table],
            "s_latent": g_latent[table], "s_n_active": n_active[table],
            "s_max_act": max_act[table], "s_sum_act": sum_act[table]}


def _rank_in_runs(run: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Each element's rank by descending `value` within its run of equal `run` keys (runs are
    contiguous), ties to the earlier element. Runs of one length are ranked together as the
    rows of a matrix (a TopK SAE's positions all have k entries), so the sorts are short rows,
    not one sort of every element."""
    new_run = np.concatenate(([True], run[1:] != run[:-1]))[:len(run)]
    starts = np.flatnonzero(new_run)
    lengths = np.diff(np.append(starts, len(run)))
    rank = np.empty(len(run), dtype=np.int64)
    for n in np.unique(lengths).tolist():
        at = starts[lengths == n][:, None] + np.arange(n)
        order = np.argsort(-value[at], axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(n)[None, :], axis=1)
        rank[at] = ranks
    return rank
