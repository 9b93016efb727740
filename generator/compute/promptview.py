"""The prompt view's compute: what fires on each token of a few prompts, and what it does.

The prompts come read and tokenized from generator/inputs/prompts.py (BOS first, at most `--ctx`
tokens). For every prompt, at every non-BOS position t:

    act[t, i]    the SAE's own `encode` of the hook activation, as in the statistics
    dloss[t, i]  for every latent i active anywhere on the prompt: the loss of predicting token
                 t+1 with the latent removed at every non-BOS position of the prompt
                 (h' = h - act[t', i] W_dec[i] for every t', the SAE error kept, the model re-run
                 from the hook's block), minus the clean loss; exactly what the examples'
                 ablation computes (generator/compute/engine.py, Engine._ablate). NaN at the
                 last position and where token t+1 is BOS; exactly 0 before the latent's first
                 activation (causal).

The store keeps every active (prompt, position, latent) entry with its activation and Δloss, and
per (prompt, latent) the active positions, max, total activation and total |Δloss| over the
prompt (generator.store.schema.Prompts); the render picks what pages show (generator.site.views). Inactive
latents are not ablated: removing a zero contribution changes nothing.

Memory (one prompt at a time, so the number of prompts only adds to the output): with L the
prompt's length, A the latents active on it (A <= L x L0), d_sae, d_model, d_mlp, n_heads:

    encode     min(L, R) x d_sae x 16 bytes, R positions at a time (R from the budget of
               Engine.encode_rows: 256 MB on CPU, 20% of free GPU memory)
    ablation   c prompts' copies per forward pass: c x L x (8 d_model + 2 d_mlp + 2 n_heads L)
               x 4 bytes, c = 32 on CPU, else what fits in 30% of free GPU memory; the
               unembedding runs 2,048 positions at a time (HookedSAE.losses)
    output     on the host, 18 bytes per active entry + 32 per (prompt, latent) + the tokens
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from generator.compute.activations import HookedSAE
    from generator.store.schema import Prompts

log = logging.getLogger(__name__)


def compute_prompts(hooked: HookedSAE, texts: Sequence[str], tokens: Sequence[np.ndarray],
                    truncated: np.ndarray, bos_id: int, quiet: bool = True,
                    encode_rows: int = 0, chunk: int = 0) -> Prompts:
    """Activations, Δloss and per-latent totals of every prompt (module docstring). `encode_rows`
    (positions the SAE encodes at once) and `chunk` (ablated copies per forward pass) default to
    the memory budget; the numbers do not depend on them beyond float rounding."""
    from tqdm.auto import tqdm

    from generator.store.schema import Prompts

    parts: list[dict[str, np.ndarray]] = []
    losses = []
    for n, toks in enumerate(tqdm(tokens, desc="prompts", unit="prompt", disable=quiet)):
        part, loss = _one_prompt(hooked, np.asarray(toks), bos_id, encode_rows, chunk)
        part["prompt"] = np.full(len(part["pos"]), n, dtype=np.int32)
        part["s_prompt"] = np.full(len(part["s_latent"]), n, dtype=np.int32)
        parts.append(part)
        losses.append(loss)

    def cat(name: str, dtype: Any) -> np.ndarray:
        return np.concatenate([p[name] for p in parts]).astype(dtype) if parts else \
            np.zeros(0, dtype)

    out = Prompts(
        text=list(texts), tokens=[np.asarray(t, dtype=np.int32) for t in tokens],
        truncated=np.asarray(truncated, dtype=bool), loss=losses,
        prompt=cat("prompt", np.int32), pos=cat("pos", np.int32),
        latent=cat("latent", np.int32), act=cat("act", np.float32),
        dloss=cat("dloss", np.float32), s_prompt=cat("s_prompt", np.int32),
        s_latent=cat("s_latent", np.int32), s_n_active=cat("s_n_active", np.int32),
        s_max_act=cat("s_max_act", np.float32), s_sum_act=cat("s_sum_act", np.float64),
        s_sum_abs_dloss=cat("s_sum_abs_dloss", np.float64),
    )
    log.info("prompt view: %d prompts, %d tokens, %d latent ablations", len(tokens),
             sum(len(t) for t in tokens), len(out.s_latent))
    return out


def _one_prompt(hooked: HookedSAE, toks: np.ndarray, bos_id: int, encode_rows: int,
                chunk: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    import torch

    device = hooked.device
    length = len(toks)
    with torch.inference_mode():
        tokens = torch.from_numpy(toks).to(device, torch.long)[None]
        resid, hook_acts = hooked.run_to_hook(tokens)
        mask = hooked.included(tokens, hook_acts, bos_id)[0]
        pos, latent, value = hooked.active_entries(hook_acts[0], mask,
                                                   encode_rows or _encode_rows(hooked))
        target_ok = mask[1:][None]
        clean = hooked.losses(resid, tokens, needed=target_ok)[0]
        ids, which = torch.unique(latent, return_inverse=True)  # sorted latents, entry -> row
        dloss = torch.full((len(pos),), float("nan"), device=device)
        sum_abs = np.zeros(len(ids), dtype=np.float64)
        step = chunk or _ablation_chunk(hooked, length)
        positions = torch.arange(length - 1, device=device)
        for lo in range(0, len(ids), step):
            hi = min(lo + step, len(ids))
            sel = (which >= lo) & (which < hi)
            acts = torch.zeros(hi - lo, length, device=device)
            acts[which[sel] - lo, pos[sel]] = value[sel]
            # causal: positions before the latent's first activation see the same inputs
            first = torch.where(acts > 0, torch.arange(length, device=device), length).amin(1)
            after = positions[None, :] >= first[:, None]
            delta = acts[:, :, None] * hooked.decoder_rows(ids[lo:hi])[:, None, :]
            copies = hi - lo
            ablated = hooked.losses(resid.expand(copies, *resid.shape[1:]), tokens.expand(copies, -1),
                                    delta, needed=after & target_ok)
            diff = torch.where(after, ablated - clean[None], 0.0)
            diff = torch.where(target_ok, diff, float("nan"))
            full = torch.cat([diff, torch.full((copies, 1), float("nan"), device=device)], 1)
            dloss[sel] = full[which[sel] - lo, pos[sel]]
            sum_abs[lo:hi] = np.nansum(np.abs(diff.cpu().numpy()), axis=1, dtype=np.float64)
    n_ids = len(ids)
    which_np = which.cpu().numpy()
    value_np = value.cpu().numpy()
    n_active = np.bincount(which_np, minlength=n_ids)
    max_act = np.zeros(n_ids, dtype=np.float32)
    np.maximum.at(max_act, which_np, value_np)
    part = {
        "pos": pos.cpu().numpy(), "latent": latent.cpu().numpy(), "act": value_np,
        "dloss": dloss.cpu().numpy(), "s_latent": ids.cpu().numpy(), "s_n_active": n_active,
        "s_max_act": max_act,
        "s_sum_act": np.bincount(which_np, weights=value_np.astype(np.float64), minlength=n_ids),
        "s_sum_abs_dloss": sum_abs,
    }
    loss = np.concatenate([clean.float().cpu().numpy(), [np.nan]]).astype(np.float32)
    return part, loss


def _budget(hooked: HookedSAE, fraction: float, cpu_bytes: int) -> int:
    import torch

    if hooked.device.type == "cuda":
        return int(torch.cuda.mem_get_info(hooked.device)[0] * fraction)
    return cpu_bytes


def _encode_rows(hooked: HookedSAE) -> int:
    """Positions encoded at once: [positions, d_sae] floats and ~3 temporaries in the budget."""
    return int(max(1, _budget(hooked, 0.2, 256 << 20) // (hooked.d_sae * 16)))


def _ablation_chunk(hooked: HookedSAE, length: int) -> int:
    """Ablated copies of a prompt per forward pass: 32 on CPU (the work is memory-bound there),
    else what fits in 30% of free GPU memory (module docstring)."""
    if hooked.device.type != "cuda":
        return 32
    cfg = hooked.model.cfg
    d_mlp = cfg.d_mlp or 4 * cfg.d_model
    per_copy = length * (8 * cfg.d_model + 2 * d_mlp + 2 * cfg.n_heads * length) * 4
    return int(max(1, min(4096, _budget(hooked, 0.3, 0) // per_copy)))
