"""Quality signals (definitions in docs/STATISTICS.md, "Quality signals"): per-latent flags and
SAE-level figures, so that a researcher can skip dead, dense or BOS-bound latents and judge the
SAE as a whole.

Per latent (pure numpy, from a store's columns, so the render computes them without torch):

    dead          never active on an included position (n_active = 0)
    dense         density n_active / N > 10%
    BOS           more than half of its total activation (BOS positions + included positions)
                  is at BOS positions
    first         more than half of that total is at first positions (right after a BOS)
    single-token  its top token holds >= 90% of its activation (top token's total / sum_act)
    enc-dec cos   cos(W_enc[:, i], W_dec[i]), from the SAE's weights (not a flag)

SAE-level figures (torch, during the build, `sae_figures`): explained variance and the next-token
loss clean, with the SAE's reconstruction spliced in at the hook and with the hook zero-ablated,
over the first EVAL_SEQS sequences of the corpus; L0 and the dead / dense counts come from the
whole corpus (the store's meta.l0 and the flags above).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Float, Int

if TYPE_CHECKING:  # torch stays out of `import generator.quality` (the render imports it)
    from generator.activations import HookedSAE
    from generator.store import LatentTable

DENSE_ABOVE = 0.10
"""a latent is dense when its density is above this."""
MOSTLY_ABOVE = 0.5
"""BOS / first-position flags: the share of the latent's total activation above this."""
SINGLE_FROM = 0.9
"""single-token flag: the top token's share of the latent's activation at least this."""
EVAL_SEQS = 256
"""the SAE-level figures are computed over the first min(n_seqs, EVAL_SEQS) sequences."""

DEAD, DENSE, AT_BOS, AT_FIRST, SINGLE = 1, 2, 4, 8, 16
FLAGS: tuple[tuple[int, str, str, str], ...] = (
    (DEAD, "dead", "dead", "never active on the tokens analysed"),
    (DENSE, "dense", "dense", "active on more than 10% of tokens"),
    (AT_BOS, "bos", "BOS", "more than half of its activation is at BOS / document-boundary "
                        "positions"),
    (AT_FIRST, "first", "first position", "more than half of its activation is at the first "
                                       "position after a BOS"),
    (SINGLE, "single", "single-token", "at least 90% of its activation is on one token"),
)
"""(bit, key, badge, meaning) of every flag, in the order pages show them; the key names its
CSS class and its filter."""


@dataclass(frozen=True)
class LatentQuality:
    """Per-latent quality signals; NaN where a share is undefined (no activation at all), None
    where the store lacks what it needs."""

    density: Float[np.ndarray, " d_sae"]
    bos_share: Float[np.ndarray, " d_sae"] | None
    """activation at BOS positions / (that + activation at included positions)."""
    first_share: Float[np.ndarray, " d_sae"] | None
    """activation at first positions / the same total."""
    top_token_share: Float[np.ndarray, " d_sae"] | None
    """the top token's total activation / the latent's total (included positions)."""
    enc_dec_cos: Float[np.ndarray, " d_sae"] | None
    flags: Int[np.ndarray, " d_sae"]
    """bitmask of DEAD, DENSE, AT_BOS, AT_FIRST, SINGLE."""

    def names(self, i: int) -> list[str]:
        """Latent i's flags, as badges, in FLAGS order."""
        return [name for bit, _, name, _ in FLAGS if int(self.flags[i]) & bit]


def _share(part: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, part / np.where(total > 0, total, 1.0), np.nan)


def latent_quality(lat: LatentTable, n_tokens: int) -> LatentQuality:
    """Every latent's signals from the store's columns (float64 arithmetic, as documented)."""
    n_active = np.asarray(lat.n_active, dtype=np.int64)
    density = n_active / max(1, n_tokens)
    sum_act = np.asarray(lat.sum_act, dtype=np.float64)
    flags = np.where(n_active == 0, DEAD, 0) | np.where(density > DENSE_ABOVE, DENSE, 0)
    bos_share = first_share = top_share = None
    if lat.bos_sum is not None and lat.first_sum is not None:
        bos = np.asarray(lat.bos_sum, dtype=np.float64)
        total = bos + sum_act
        bos_share = _share(bos, total)
        first_share = _share(np.asarray(lat.first_sum, dtype=np.float64), total)
        flags |= np.where(bos_share > MOSTLY_ABOVE, AT_BOS, 0)
        flags |= np.where(first_share > MOSTLY_ABOVE, AT_FIRST, 0)
    if lat.top_token_sums is not None and lat.top_token_ids is not None:
        top = np.where(lat.top_token_ids[:, 0] >= 0, lat.top_token_sums[:, 0], 0.0)
        top_share = _share(np.asarray(top, dtype=np.float64), sum_act)
        flags |= np.where(top_share >= SINGLE_FROM, SINGLE, 0)
    cos = None if lat.enc_dec_cos is None else np.asarray(lat.enc_dec_cos, dtype=np.float64)
    return LatentQuality(density=density, bos_share=bos_share, first_share=first_share,
                         top_token_share=top_share, enc_dec_cos=cos,
                         flags=flags.astype(np.int64))


# ----------------------------------------------------------------------------------------------
# from the SAE and the model (torch)


def encoder_decoder_cosine(sae: Any, block: int = 4096) -> Float[np.ndarray, " d_sae"]:
    """cos(W_enc[:, i], W_dec[i]) for every latent (0 where either vector is zero), a block of
    latents at a time: temporaries 2 x block x d_in floats, never d_sae x d_sae."""
    import torch

    w_enc, w_dec = sae.W_enc.detach(), sae.W_dec.detach()
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

    Explained variance is 1 - Σ‖x - x̂‖² / Σ‖x - x̄‖² over the included positions' hook
    activations x (flattened to d_in), x̂ = decode(encode(x)) the SAE's reconstruction and x̄ the
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
            mask = toks != bos_id
            resid, hook_acts = hooked.run_to_hook(toks)
            native = hook_acts[mask]  # [positions, *the hook's shape], as the SAE reads it
            x = native.reshape(len(native), -1).float()
            step = max(1, encode_rows)
            recon = (torch.cat([_reconstruct(hooked, native[a:a + step])
                                for a in range(0, len(x), step)]) if len(x) else x)
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


def _reconstruct(hooked: HookedSAE, x: Any) -> Any:
    """x̂ = decode(encode(x)) of a chunk of positions, flattened to [n, d_in] float32."""
    acts = hooked.encode(x)
    return hooked.sae.decode(acts).reshape(len(x), -1).float()
