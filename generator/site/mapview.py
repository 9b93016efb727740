"""The latent map on the site (the layout itself is computed in the build: generator/compute/latent_map.py).
Pure numpy + scipy + Pillow: no torch, no umap.

Files (only when the store has a map):

    map/points.js     `fbMap({...})`, loaded by the index page's map when it scrolls into view
                      (a <script> file, so it works from file://); see `points_script`
    map/overview.png  a small picture of the whole map: the index page's map without scripts,
                      and the thumbnail on every latent page, where a marker shows the latent

Coordinates are normalised into the unit square by one scale for both axes (the map keeps its
shape), the shorter side centred: u = (x - x0) / span, v = (y - y0) / span, with y growing
downwards on screen. The latent page's map neighbours are its N_MAP_NEIGHBOURS nearest latents
on the map (Euclidean in map units, ties to the lower id).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from generator.site.charts import round3, sig, sigs
from generator.site.contexts import MapSpot, NeighbourRow
from generator.site.search import script_call
from generator.store.schema import StoreData

POINTS_FILE = "map/points.js"
OVERVIEW_FILE = "map/overview.png"
N_MAP_NEIGHBOURS = 5
"""map neighbours listed on a latent page."""
THUMB = 200
"""size of map/overview.png in pixels (square)."""
THUMB_MARGIN = 6
"""empty pixels around the points in the overview, so that edge markers stay whole."""
QUANT = 65535
"""coordinates ship as uint16: 1/65535 of the map's extent (far below a pixel at any zoom the
page allows)."""
STAT_LEVELS = 254
"""a statistic ships as one byte per latent: 0 = no value (dead, or not computed), else
1 + round(254 t), t in [0, 1] on the statistic's scale between its lo and hi."""


class SiteMap:
    """The store's map, normalised, with every latent's map neighbours (computed once, before
    the page workers fork)."""

    def __init__(self, data: StoreData) -> None:
        lat = data.latents
        assert lat.map_x is not None and lat.map_y is not None
        self.data = data
        xy = np.stack([lat.map_x, lat.map_y], axis=1).astype(np.float64)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        self.span = float(max((hi - lo).max(), 1e-9))
        offset = lo - (self.span - (hi - lo)) / 2  # the shorter side centred
        self.xy = xy
        self.unit = np.clip((xy - offset) / self.span, 0.0, 1.0)
        self.box = [float(offset[0]), float(offset[1]), self.span]
        self.nb_ids, self.nb_dist = map_neighbours(xy, N_MAP_NEIGHBOURS)

    @classmethod
    def of(cls, data: StoreData) -> SiteMap | None:
        lat = data.latents
        return cls(data) if lat.map_x is not None and lat.map_y is not None else None

    def spot(self, i: int, label: Callable[[int], str]) -> MapSpot:
        """Latent i's place: `label` names a neighbour (pages.PageBuilder.short_label)."""

        left, top = (THUMB_MARGIN + self.unit[i] * (THUMB - 2 * THUMB_MARGIN)) / THUMB * 100
        rows = [NeighbourRow(j, d, label(j))
                for j, d in zip(self.nb_ids[i].tolist(), sigs(self.nb_dist[i]), strict=True)
                if j >= 0]
        return MapSpot(left=f"{left:.1f}", top=f"{top:.1f}", x=sig(float(self.xy[i, 0])),
                       y=sig(float(self.xy[i, 1])), neighbours=rows)

    def write(self, out: Path) -> None:
        (out / "map").mkdir(parents=True, exist_ok=True)
        (out / POINTS_FILE).write_bytes(self.points_script())
        (out / OVERVIEW_FILE).write_bytes(self.overview_png())

    def points_script(self) -> bytes:
        """`fbMap({n, box, xy, stats})`: `xy` is base64 of n (u, v) pairs as little-endian
        uint16 (value / QUANT is the unit-square coordinate), `box` = [x0, y0, span] maps them
        back to map units, and `stats` lists the colourings: {k, name, scale ("log" / "lin"), lo,
        hi, v}, `v` base64 of one byte per latent (STAT_LEVELS)."""
        q = np.round(self.unit * QUANT).astype("<u2")
        return script_call("fbMap", {
            "n": int(len(q)), "box": [round(float(b), 4) for b in self.box],
            "xy": base64.b64encode(q.tobytes()).decode(), "stats": map_stats(self.data)})

    def overview_png(self) -> bytes:
        """The whole map as THUMB x THUMB pixels: a dot per latent (bigger for fewer latents),
        each pixel's opacity growing with the log of the number of dots on it (transparent
        background, for light and dark pages)."""
        from PIL import Image

        inner = THUMB - 2 * THUMB_MARGIN
        px = THUMB_MARGIN + np.minimum((self.unit * inner).astype(np.int64), inner - 1)
        counts = np.zeros((THUMB, THUMB), dtype=np.int64)
        dot = 1 if len(px) > 20000 else 2 if len(px) > 2000 else 3  # few latents: bigger dots
        for dy in range(dot):
            for dx in range(dot):
                np.add.at(counts, (np.minimum(px[:, 1] + dy - dot // 2, THUMB - 1),
                                   np.minimum(px[:, 0] + dx - dot // 2, THUMB - 1)), 1)
        alpha = np.where(counts > 0, np.minimum(255, 130 + 40 * np.log2(np.maximum(counts, 1))),
                         0).astype(np.uint8)
        rgba = np.zeros((THUMB, THUMB, 4), dtype=np.uint8)
        rgba[..., :3] = (70, 110, 170)
        rgba[..., 3] = alpha
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def map_neighbours(xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each point's k nearest other points (Euclidean), nearest first, ties to the lower id;
    -1 / NaN pad when there are fewer than k others."""
    from scipy.spatial import cKDTree

    n = len(xy)
    ids = np.full((n, k), -1, dtype=np.int64)
    dist = np.full((n, k), np.nan)
    if n < 2:
        return ids, dist
    extra = min(n, k + 1 + 8)  # a few spare candidates, then an exact (distance, id) order
    d, j = cKDTree(xy).query(xy, k=extra)
    d, j = np.atleast_2d(d), np.atleast_2d(j)
    d = np.where(j == np.arange(n)[:, None], np.inf, d)  # not its own neighbour
    order = np.lexsort((j, d), axis=1)
    d, j = np.take_along_axis(d, order, 1), np.take_along_axis(j, order, 1)
    m = min(k, n - 1)
    ids[:, :m], dist[:, :m] = j[:, :m], d[:, :m]
    return ids, dist


def _stat(key: str, name: str, values: np.ndarray, valid: np.ndarray, scale: str,
          lo: float, hi: float) -> dict[str, object]:
    f = np.log10 if scale == "log" else (lambda v: v)
    flo, fhi = float(f(lo)), float(f(hi))
    t = (f(np.where(valid, values, lo)) - flo) / (fhi - flo if fhi > flo else 1.0)
    code = np.where(valid, 1 + np.round(np.clip(t, 0, 1) * STAT_LEVELS), 0).astype(np.uint8)
    return {"k": key, "name": name, "scale": scale, "lo": round3(lo), "hi": round3(hi),
            "v": base64.b64encode(code.tobytes()).decode()}


def map_stats(data: StoreData) -> list[dict[str, object]]:
    """The colourings of the map: firing density (log scale), max activation, and with ablation
    the mean Δloss (both between their 1st and 99th percentiles, clipped)."""
    lat = data.latents
    alive = lat.n_active > 0
    density = lat.n_active / max(1, data.meta.n_tokens)
    out = []
    if alive.any():
        out.append(_stat("d", "firing density", density, alive, "log",
                         float(density[alive].min()), float(density[alive].max())))
        mx = lat.max_act.astype(np.float64)
        out.append(_stat("x", "max activation", mx, alive, "lin",
                         *(float(v) for v in np.percentile(mx[alive], [1, 99]))))
    if lat.abl_mean is not None:
        am = lat.abl_mean.astype(np.float64)
        ok = np.isfinite(am)
        if ok.any():
            out.append(_stat("am", "mean Δloss when ablated", am, ok, "lin",
                             *(float(v) for v in np.percentile(am[ok], [1, 99]))))
    return out


__all__ = ["N_MAP_NEIGHBOURS", "OVERVIEW_FILE", "POINTS_FILE", "MapSpot", "SiteMap",
           "map_neighbours", "map_stats"]
