"""Numbers for people and the inline-SVG charts of the site (DESIGN §5: charts are server-rendered).

A chart is a `Chart` of `Bar`s that the `_histogram.svg.html` partial draws: one SVG path per run of
bins sharing a colour class and a tooltip, so a 50-bin histogram costs about half a kilobyte.

The number formatting helpers live here, below the page contexts (`generator.pages`), because
chart labels and tooltips need them too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVELS = 9
"""activation colour classes a1..a9 (tokens and histogram bins share them)."""
CHART_WIDTH = 600


# ---------------------------------------------------------------------------------------------
# numbers for people


def sig(x: float, digits: int = 3) -> str:
    """A number for people: 3 significant digits, thousands separators, no exponent below 1e6."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1000 and abs(x) < 1e6:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def signed(x: float) -> str:
    return ("+" if x > 0 else "") + sig(x)


def percent(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0%"
    v = 100 * x
    return f"{v:.3g}%" if v >= 0.001 else f"{v:.2e}%"


def count(n: int) -> str:
    return f"{int(n):,}"


def plural(n: int, noun: str) -> str:
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def round3(x: float) -> float:
    """3 significant digits: what the browser receives, so Python and JS classify identically."""
    return float(f"{x:.3g}")


# ---------------------------------------------------------------------------------------------
# charts


@dataclass(frozen=True)
class Bar:
    cls: str
    d: str
    title: str


@dataclass(frozen=True)
class Chart:
    """A bar chart drawn at render time as inline SVG: one path per colour class."""

    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str, str]]
    """(x, text-anchor, text) under the axis."""
    title: str


def bar_chart(counts: Sequence[int], classes: Sequence[str], titles: Sequence[str],
              labels: list[tuple[float, str]], title: str, height: int = 100) -> Chart:
    """Equal-width bars scaled to the largest count, drawn as one step outline per run of bins
    sharing a class and title (compact: ~6 bytes a bin, neighbours of equal height merged).
    Non-empty bins stay >= 1 unit tall."""
    bar_w = CHART_WIDTH / max(1, len(counts))
    top = max(1, max(counts, default=0))
    heights = [0 if c <= 0 else max(1, round(height * c / top)) for c in counts]
    bars = []
    for k, end in _runs(classes, titles):
        steps: list[str] = []
        for b in range(k, end + 1):
            y, x = f"V{height - heights[b]}", f"H{_coord((b + 1) * bar_w)}"
            if b > k and heights[b] == heights[b - 1]:
                steps[-1] = steps[-1][:steps[-1].index("H")] + x  # extend the same level
            else:
                steps.append(y + x)
        path = f"M{_coord(k * bar_w)} {height}{''.join(steps)}V{height}Z"
        bars.append(Bar(classes[k], path, titles[k]))
    anchored = [(x * CHART_WIDTH, "start" if x == 0 else "end" if x == 1 else "middle", text)
                for x, text in labels]
    return Chart(width=CHART_WIDTH, height=height, bars=bars, labels=anchored, title=title)


def _runs(classes: Sequence[str], titles: Sequence[str]) -> list[tuple[int, int]]:
    """[first, last] bin of each maximal run of bins with the same (class, title)."""
    runs = []
    k = 0
    while k < len(classes):
        end = k
        while end + 1 < len(classes) and (classes[end + 1], titles[end + 1]) == (classes[k],
                                                                                 titles[k]):
            end += 1
        runs.append((k, end))
        k = end + 1
    return runs


def _coord(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def activation_chart(hist: np.ndarray, interval_counts: np.ndarray, peak: float) -> Chart:
    """Histogram of active positions, each bin coloured by the interval its centre falls in."""
    n_bins, n_int = len(hist), len(interval_counts)
    interval_of = [min(n_int - 1, int((k + 0.5) * n_int / n_bins)) for k in range(n_bins)]
    classes = [f"a{interval_level(j, n_int)}" for j in interval_of]
    titles = []
    for j in interval_of:
        lo, hi = interval_bounds(j, n_int, peak)
        titles.append(f"({lo}, {hi}]: {plural(interval_counts[j], 'sequence')}")
    return bar_chart([int(c) for c in hist], classes, titles, [(0, "0"), (1, sig(peak))],
                     f"Histogram of nonzero activations over (0, {sig(peak)}], "
                     f"{n_bins} bins coloured by interval")


def interval_level(j: int, n_intervals: int) -> int:
    """The colour level of interval j: the level of its upper bound."""
    return max(1, math.ceil(LEVELS * (j + 1) / n_intervals))


def interval_bounds(j: int, n_intervals: int, peak: float) -> tuple[str, str]:
    """Interval j of (0, peak] as (lo, hi] formatted for people."""
    return sig(j * peak / n_intervals), sig((j + 1) * peak / n_intervals)


def logit_chart(hist: np.ndarray, lo: float, hi: float) -> Chart:
    """Histogram of a latent's logit effect over the vocabulary, positive and negative bins."""
    n = len(hist)
    centres = [lo + (k + 0.5) * (hi - lo) / max(1, n) for k in range(n)]
    classes = ["lp" if c >= 0 else "ln" for c in centres]
    return bar_chart([int(c) for c in hist], classes, [""] * n, [(0, sig(lo)), (1, sig(hi))],
                     f"Logit effects of this latent over the vocabulary, {n} bins over "
                     f"[{sig(lo)}, {sig(hi)}]")


def density_chart(densities: np.ndarray) -> Chart | None:
    """Histogram of log10 density over the latents that fire (None when none does)."""
    alive = densities[densities > 0]
    if not len(alive):
        return None
    logs = np.log10(alive)
    lo = math.floor(float(logs.min()))
    bins = 40
    hist, _ = np.histogram(logs, bins=bins, range=(lo, 0.0))
    return bar_chart([int(c) for c in hist], ["a5"] * bins, [""] * bins,
                     [(0, f"1e{lo}"), (1, "1")],
                     f"log10 density of the {len(alive):,} latents that fire, {bins} bins")
