"""The corpus view's compute: what fires on each token of every sequence the site keeps.

Every sequence the store keeps (StoreData.seq_ids: those some example points to) is computed;
the site gives a page `corpus/<seq>.html`, like a prompt page (generator/site/views.py), to
each one that a shown example points to. The activations are the SAE's
own `encode` of the hook activation at every non-BOS position, as in the statistics. For each
sequence the store keeps (generator.store.schema.CorpusView):

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

Memory (one batch of B sequences of ctx positions, B the engine's batch size): the model's
activations up to the hook and after it for the clean loss (as pass 1 and the ablation), the
SAE's dense output for R positions at a time (R x d_sae x 16 bytes, R = Engine.encode_rows),
and one sequence's active entries (<= ctx x L0_max x 16 bytes). Output on the host: 16 bytes per
kept entry (<= ctx x (CORPUS_TOP + 2 CORPUS_LIST) per sequence) + 24 per table row + 4 x ctx.
The render holds the same, plus a float32 Δloss per entry and a float64 total per table row.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Int

from generator.store.schema import CORPUS_LIST, CORPUS_TOP, CorpusView

if TYPE_CHECKING:
    from generator.compute.activations import HookedSAE

log = logging.getLogger(__name__)


def compute_corpus_view(hooked: HookedSAE, tokens: Int[np.ndarray, "n_kept ctx"], bos_id: int,
                        batch_size: int, encode_rows: int, quiet: bool = True) -> CorpusView:
    """The corpus view of the kept sequences `tokens` (module docstring)."""
    import torch
    from tqdm.auto import tqdm

    parts: list[dict[str, np.ndarray]] = []
    losses, n_latents = [], []
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
            for j in range(len(toks)):
                part, count = _one_sequence(hooked, hook_acts[j], mask[j], max(1, encode_rows))
                part["row"] = np.full(len(part["pos"]), lo + j, dtype=np.int32)
                part["s_row"] = np.full(len(part["s_latent"]), lo + j, dtype=np.int32)
                parts.append(part)
                n_latents.append(count)
            bar.update(len(toks))
    bar.close()

    def cat(name: str, dtype: Any) -> np.ndarray:
        return (np.concatenate([p[name] for p in parts]).astype(dtype) if parts
                else np.zeros(0, dtype))

    ctx = tokens.shape[1] if tokens.ndim == 2 else 0
    out = CorpusView(
        loss=np.concatenate(losses) if losses else np.zeros((0, ctx), np.float32),
        n_latents=np.asarray(n_latents, dtype=np.int32),
        row=cat("row", np.int32), pos=cat("pos", np.int32), latent=cat("latent", np.int32),
        act=cat("act", np.float32), s_row=cat("s_row", np.int32),
        s_latent=cat("s_latent", np.int32), s_n_active=cat("s_n_active", np.int32),
        s_max_act=cat("s_max_act", np.float32), s_sum_act=cat("s_sum_act", np.float64))
    log.info("corpus view: %d sequences, %d entries, %d table rows", len(tokens), len(out.row),
             len(out.s_row))
    return out


def _one_sequence(hooked: HookedSAE, hook_acts: Any, mask: Any,
                  rows: int) -> tuple[dict[str, np.ndarray], int]:
    """One sequence's kept entries and table (module docstring), and its active-latent count."""
    entries = hooked.active_entries(hook_acts, mask, rows)
    pos, latent = (x.cpu().numpy().astype(np.int32) for x in entries[:2])
    act = entries[2].cpu().numpy().astype(np.float32)
    ids, which = np.unique(latent, return_inverse=True)
    n_active = np.bincount(which, minlength=len(ids))
    max_act = np.zeros(len(ids), dtype=np.float32)
    np.maximum.at(max_act, which, act)
    sum_act = np.bincount(which, weights=act.astype(np.float64), minlength=len(ids))
    table = np.zeros(len(ids), dtype=bool)
    for key in (max_act, sum_act):  # ids are sorted, so a stable sort breaks ties to the lower id
        table[np.argsort(-key.astype(np.float64), kind="stable")[:CORPUS_LIST]] = True
    order = np.lexsort((latent, -act.astype(np.float64), pos))
    rank = np.zeros(len(pos), dtype=np.int64)
    if len(order):
        sorted_pos = pos[order]
        first = np.searchsorted(sorted_pos, sorted_pos)  # first entry of each position
        rank[order] = np.arange(len(order)) - first
    keep = (rank < CORPUS_TOP) | table[which]
    keep_order = np.lexsort((latent[keep], pos[keep]))
    part: dict[str, np.ndarray] = {
        "pos": pos[keep][keep_order], "latent": latent[keep][keep_order],
        "act": act[keep][keep_order], "s_latent": ids[table].astype(np.int32),
        "s_n_active": n_active[table].astype(np.int32), "s_max_act": max_act[table],
        "s_sum_act": sum_act[table],
    }
    return part, len(ids)
