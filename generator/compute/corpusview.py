"""The corpus view's compute: what fires on each token of every sequence the site keeps.

Every sequence the store keeps (StoreData.seq_ids: those some example points to, and the null
pool of generator/compute/nulls.py) is computed; the site gives a page `corpus/<seq>.html`, like a
prompt page (generator/site/views.py), to each one that a shown example points to. The
activations are pass 1's: the active entries the
statistics counted (Engine.entries_of: pass 1's cache, or its batch re-run), so the SAE is not
run again and the page shows the bits the statistics saw. The clean loss needs the model after
the hook: pass 1 runs it for every sequence when the corpus view is on
(EngineSettings.clean_loss, which says why every sequence), so no sequence is run twice and this
stage runs no model. For each sequence the store keeps
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

Memory: on the host, one chunk of kept sequences' active entries (<= CHUNK_ENTRIES + one
batch's; all of the demo's E = n_kept x ctx x L0 = 6.3 M) at ~60 bytes each while the tables are
made (the entries, their sort orders and group ids), and a batch re-run where pass 1's cache
did not keep it (Engine.entries_of: the memory of one pass-1 batch). Output on
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
    from generator.compute.statistics import SparseBatch

log = logging.getLogger(__name__)


Entries = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(row in kept, position, latent, activation) of active entries, one array each."""

CHUNK_ENTRIES = 1 << 22
"""active entries whose tables are made at once (whole sequences; ~60 bytes each meanwhile)."""


def compute_corpus_view(kept: Int[np.ndarray, " n_kept"], ctx: int,
                        entries: Iterable[SparseBatch]) -> CorpusView:
    """The corpus view of the kept sequences `kept` (ascending global indices), from `entries`:
    pass 1's active entries and clean losses of batches that cover them, in sequence order
    (Engine.entries_of with EngineSettings.clean_loss; module docstring)."""
    loss = np.full((len(kept), ctx), np.nan, dtype=np.float32)
    parts = [_tables(*chunk, len(kept)) for chunk in _kept_entries(entries, kept, ctx, loss)]

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


def _kept_entries(entries: Iterable[SparseBatch], kept: Int[np.ndarray, " n_kept"],
                  ctx: int, loss: Float[np.ndarray, "n_kept ctx"]) -> Iterator[Entries]:
    """(row in `kept`, position, latent, activation) of the kept sequences' entries, ordered by
    row, position, latent, in chunks of whole sequences of about CHUNK_ENTRIES entries; each
    kept sequence's losses are copied into `loss` on the way."""
    parts: list[Entries] = []
    size = 0
    for sparse in entries:
        if sparse.loss is None:
            raise ValueError("the corpus view needs pass 1's losses (EngineSettings.clean_loss)")
        seq_ids = sparse.seq_ids.numpy()
        at_seq = np.minimum(np.searchsorted(kept, seq_ids), max(len(kept) - 1, 0))
        hit_seq = kept[at_seq] == seq_ids if len(kept) else np.zeros(len(seq_ids), bool)
        loss[at_seq[hit_seq]] = sparse.loss.numpy()[hit_seq]
        at, hit = at_seq[sparse.row.numpy()], hit_seq[sparse.row.numpy()]
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
