"""Per-latent quality flags (definitions in docs/STATISTICS.md, "Quality signals"): pure numpy, from
a store's columns, so that the render computes them without torch and a researcher can skip dead,
dense or BOS-bound latents.

    dead          never active on an included position (n_active = 0)
    dense         density n_active / N > 10%
    BOS           more than half of its total activation (BOS positions + included positions)
                  is at BOS positions
    first         more than half of that total is at first positions (right after a BOS)
    single-token  its top token holds >= 90% of its activation (top token's total / sum_act)
    enc-dec cos   cos(W_enc[:, i], W_dec[i]), from the SAE's weights (not a flag; computed in the
                  build by generator/compute/quality.py)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from generator.store.schema import LatentTable

DENSE_ABOVE = 0.10
"""a latent is dense when its density is above this."""
MOSTLY_ABOVE = 0.5
"""BOS / first-position flags: the share of the latent's total activation above this."""
SINGLE_FROM = 0.9
"""single-token flag: the top token's share of the latent's activation at least this."""

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
WELL_EXPLAINED = 32
WELL_EXPLAINED_FROM = 0.75
LABEL_FLAG = (WELL_EXPLAINED, "label", "well explained",
              "its generated explanation scored at least 0.75 (balanced accuracy) on every "
              "scorer that ran")
"""the flag of a site with scored explanations (`feature-browser explain`), after FLAGS."""


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
