"""SAE-level quality figures (definitions in docs/STATISTICS.md, "Quality signals"), computed in
the build with torch: explained variance and the next-token loss clean, with the SAE's
reconstruction spliced in at the hook and with the hook zero-ablated, over the first EVAL_SEQS
sequences of the corpus; and every latent's encoder-decoder cosine. L0 and the dead / dense
counts come from the whole corpus (the store's meta.l0 and the per-latent flags of
generator/site/quality.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Float, Int

if TYPE_CHECKING:  # torch is imported where it is used, so that importing this module is cheap
    from generator.compute.activations import HookedSAE

EVAL_SEQS = 256
"""the SAE-level figures are computed over the first min(n_seqs, EVAL_SEQS) sequences."""


def encoder_decoder_cosine(sae: Any, block: int = 4096) -> Float[np.ndarray, " d_sae"]:
    """cos(W_enc[:, i], W_dec[i]) for every latent (0 where either vector is zero), a block of
    latents at a time: temporaries 2 x block x d_in floats, never d_sae x d_sae. An SAE with tied
    weights and no W_enc of its own (a temporal SAE's option) encodes with W_dec transposed."""
    import torch

    w_dec = sae.W_dec.detach()
    w_enc = sae.W_enc.detach() if hasattr(sae, "W_enc") else w_dec.T
    d_sae = int(w_dec.shape[0])
    out = np.zeros(d_sae, dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, d_sae, block):
            enc = w_enc[:, lo:lo + block].T.double()
            dec = w_dec[lo:lo + block].double()
            norms = enc.norm(dim=1) * dec.norm(dim=1)
            cos = torch.where(norms > 0, (enc * dec).sum(1) / norms.clamp_min(1e-300), 0.0)
            out[lo:lo + block] = cos.float().cpu().numpy()
    return out


@dataclass(frozen=True)
class SaeFigures:
    """The SAE as a whole, over the first `n_seqs` sequences of the corpus."""

    n_seqs: int
    n_positions: int
    """included (non-BOS) positions: explained variance is over these."""
    n_predictions: int
    """next-token predictions whose target is not BOS: the losses are means over these."""
    explained_variance: float
    ce_clean: float
    ce_spliced: float
    """with the SAE's reconstruction in place of the hook activation at every non-BOS position."""
    ce_zero: float
    """with the hook activation zeroed at every non-BOS position."""

    @property
    def loss_recovered(self) -> float:
        """(zero - spliced) / (zero - clean); NaN when zero-ablation changes nothing."""
        gap = self.ce_zero - self.ce_clean
        return (self.ce_zero - self.ce_spliced) / gap if gap != 0 else math.nan

    def meta_fields(self) -> dict[str, Any]:
        """The StoreMeta fields holding these figures (None where undefined)."""
        def finite(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"eval_n_seqs": self.n_seqs, "eval_n_positions": self.n_positions,
                "eval_n_predictions": self.n_predictions,
                "explained_variance": finite(self.explained_variance),
                "ce_loss_clean": finite(self.ce_clean), "ce_loss_spliced": finite(self.ce_spliced),
                "ce_loss_zero": finite(self.ce_zero), "loss_recovered": finite(self.loss_recovered)}


def sae_figures(hooked: HookedSAE, tokens: Int[np.ndarray, "n_seqs ctx"], bos_id: int,
                batch_size: int, encode_rows: int, n_seqs: int = EVAL_SEQS,
                budget: int = 1 << 30) -> SaeFigures:
    """Explained variance and the clean / spliced / zero-ablated next-token loss over the first
    min(n_seqs, len(tokens)) sequences, B = min(batch_size, budget / (24 x ctx x d_in)) sequences
    at a time (a figure that depends only on the inputs, so the bytes do too).

    Explained variance is 1 - Σ‖x - x̂‖² / Σ‖x - x̄‖² over the included positions' activations x
    at the hook the SAE writes (flattened; for an SAE the hook it reads), x̂ the SAE's output
    for what it read there (decode(encode(·)), plus a skip transcoder's skip term) and x̄ the
    mean of x; sums in float64. The losses re-run the model from the hook's block (as the
    ablation does) with x - x̂ (spliced) or x (zero-ablated) subtracted at the non-BOS positions,
    and average over the predictions whose target is not BOS.

    Memory, B sequences of ctx positions: the model's activations up to and after the hook for
    B sequences (at most one engine batch), two [B, ctx, d_in] float32 differences and x and x̂
    for the batch's included positions (together <= 24 x B x ctx x d_in bytes <= budget), and
    the SAE's dense output for `encode_rows` positions at a time (encode_rows x d_sae x 16
    bytes)."""
    import torch

    device = hooked.device
    n = min(n_seqs, len(tokens))
    per_seq = 24 * tokens.shape[1] * int(hooked.sae.cfg.d_in)
    batch_size = max(1, min(batch_size, budget // per_seq))
    sse = sum_sq = 0.0
    sum_x: Any = 0.0
    losses = [0.0, 0.0, 0.0]
    n_pos = n_pred = 0
    with torch.inference_mode():
        for lo in range(0, n, max(1, batch_size)):
            toks = torch.from_numpy(tokens[lo:min(n, lo + batch_size)]).to(device, torch.long)
            resid, read, written = hooked.run_to_hooks(toks)
            mask = hooked.included(toks, read, bos_id)
            rows, cols = torch.nonzero(mask, as_tuple=True)
            x = written[rows, cols].flatten(1).float()  # what its output stands for
            recon = hooked.reconstruct_at(read, rows, cols, encode_rows)
            x64 = x.double()
            sse += float(((x64 - recon.double()) ** 2).sum())
            sum_sq += float((x64 ** 2).sum())
            sum_x = sum_x + x64.sum(0)
            n_pos += len(x)
            spliced = torch.zeros((*toks.shape, x.shape[1]), device=device)
            spliced[mask] = x - recon
            zeroed = torch.zeros_like(spliced)
            zeroed[mask] = x
            needed = mask[:, 1:]
            for k, delta in enumerate((None, spliced, zeroed)):
                loss = hooked.losses(resid, toks, delta, needed=needed)
                losses[k] += float(loss[needed].double().sum())
            n_pred += int(needed.sum())
    total_var = sum_sq - float((torch.as_tensor(sum_x) ** 2).sum()) / max(1, n_pos)
    ev = 1 - sse / total_var if total_var > 0 else math.nan
    clean, spliced_loss, zero = (v / n_pred if n_pred else math.nan for v in losses)
    return SaeFigures(n_seqs=n, n_positions=n_pos, n_predictions=n_pred, explained_variance=ev,
                      ce_clean=clean, ce_spliced=spliced_loss, ce_zero=zero)


