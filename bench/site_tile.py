"""Tile a real store up to a real SAE width, for site-size and render-speed benchmarks without a GPU.

`tile_store(data, d_sae)` repeats every latent of a real store (e.g. the 1,024-latent demo) until
there are `d_sae` of them: copy c of latent i becomes latent c * base + i, and its neighbour ids
move with it (so neighbour links stay inside the copy and resolve). Pages, embeds, search terms
and table rows are therefore as large as the real ones; only their content repeats.

The corpus grows with the latents: `seqs_per_latent` (default 1, the ratio the size targets
assume: 24,576 sequences of 128 tokens for 24,576 latents) decides how many copies of the kept
sequences exist, with sequence ids shifted per copy; latent copy c points into corpus copy
c mod n_corpus_copies. Counts (n_active, sums, histograms) and n_tokens scale with the corpus
copies, so densities and means stay those of the real store.

The example activations and Δloss are not copied: a `RowTile` serves row r from the base row
r mod n, so a 131,072-latent store (9 M examples x 128 positions x 2 arrays, 9 GB if dense) costs
no more memory than the real one.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from generator.store.schema import Examples, LatentTable, StoreData

NEIGHBOUR_FIELDS = ("nb_cos_ids", "nb_coact_ids")
COUNT_FIELDS = ("n_active", "sum_act", "hist", "interval_counts", "top_token_sums",
                "top_token_counts", "bos_sum", "first_sum")


class RowTile:
    """A read-only 2-D array whose row r is base[r % len(base)] (what render indexes)."""

    def __init__(self, base: np.ndarray, rows: int) -> None:
        self.base, self.rows = base, rows
        self.shape = (rows, *base.shape[1:])
        self.dtype = base.dtype
        self.ndim = base.ndim

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, int | np.integer):
            if not -self.rows <= index < self.rows:
                raise IndexError(index)
            return self.base[int(index) % len(self.base)]
        rows = np.asarray(index)
        if rows.dtype.kind not in "iu" or (rows.size and (rows.min() < 0 or rows.max() >= self.rows)):
            raise IndexError("RowTile takes integer rows in range")
        return self.base[rows % len(self.base)]


def tile_store(data: StoreData, d_sae: int, seqs_per_latent: float = 1.0) -> StoreData:
    base = data.latents.d_sae
    copies = math.ceil(d_sae / base)
    n_kept = len(data.seq_ids)
    corpus_copies = max(1, min(copies, round(seqs_per_latent * d_sae / max(1, n_kept))))
    span = int(max(data.meta.n_seqs, int(data.seq_ids.max()) + 1))

    lat: dict[str, Any] = {}
    for name, value in vars(data.latents).items():
        if value is None:
            lat[name] = None
            continue
        arr = np.asarray(value)
        tiled = np.concatenate([arr] * copies)[:d_sae]
        if name in NEIGHBOUR_FIELDS:
            shift = (np.arange(d_sae) // base * base).reshape(-1, *([1] * (arr.ndim - 1)))
            tiled = np.where(tiled >= 0, tiled + shift, tiled)
        elif name in COUNT_FIELDS:
            tiled = tiled * corpus_copies
        elif name in ("map_x", "map_y"):  # copies side by side on a grid: distinct points
            copy = np.arange(d_sae) // base
            step = 1.2 * float(np.ptp(arr)) + 1.0
            tiled = tiled + step * (copy % 16 if name == "map_x" else copy // 16)
        lat[name] = tiled

    ex = data.examples
    n_ex = len(ex.seq)
    keep = ex.latent < d_sae - base * (copies - 1)  # the last copy may be partial
    copy_of_row = np.repeat(np.arange(copies), n_ex)
    last = copy_of_row == copies - 1
    mask = ~last | np.tile(keep, copies)
    rows = np.flatnonzero(mask)
    base_rows = rows % n_ex
    copy = rows // n_ex
    examples = Examples(
        latent=ex.latent[base_rows] + copy * base,
        kind=[ex.kind[r] for r in base_rows],
        interval=ex.interval[base_rows], rank=ex.rank[base_rows],
        seq=ex.seq[base_rows] + (copy % corpus_copies) * span,
        acts=_rows(ex.acts, base_rows, n_ex, len(rows)),
        dloss=None if ex.dloss is None else _rows(ex.dloss, base_rows, n_ex, len(rows)),
    )
    seq_ids = np.concatenate([data.seq_ids + k * span for k in range(corpus_copies)])
    seq_tokens = RowTile(data.seq_tokens, n_kept * corpus_copies)
    meta = replace(data.meta, d_sae=d_sae, n_seqs=data.meta.n_seqs * corpus_copies,
                   n_tokens=data.meta.n_tokens * corpus_copies)
    return StoreData(meta=meta, latents=LatentTable(**lat), examples=examples, seq_ids=seq_ids,
                     seq_tokens=seq_tokens, vocab=data.vocab)  # type: ignore[arg-type]


def _rows(values: np.ndarray, base_rows: np.ndarray, n_ex: int, n_rows: int) -> Any:
    """Row r of the tiled examples is base row base_rows[r]: whole copies map r -> r mod n_ex,
    which RowTile serves without copying; a partial last copy keeps a prefix of each copy's rows
    in the same order, so the mapping stays r -> r mod n_ex as long as the prefix is the rows of
    latents < cut (examples are sorted by latent)."""
    if not np.array_equal(base_rows, np.arange(n_rows) % n_ex):
        return values[base_rows]
    return RowTile(values, n_rows)
