"""Numbers for people and the inline-SVG charts of the site (server-rendered, readable with JS off).

A chart is a `Chart` of `Bar`s that the `_histogram.svg.html` partial draws: one SVG path per run of
bins sharing a colour, so a 50-bin histogram costs about half a kilobyte. What each bar counts
(its tooltip) ships as the chart's `Bins`, a few attributes on the `<svg>` that static/charts.js
turns into a tooltip on hover (`Bins.tip` is the reference text):

    data-c="DAM..."       the count of every bin, as varints (the B64 digits of generator.site.codec)
    data-x="LO HI"        the range (float32 written shortest): bin k covers
                          LO + k(HI-LO)/n .. LO + (k+1)(HI-LO)/n, or 10 to those powers with data-l
    data-t="UNIT|WHAT|B"  "12 UNITs with WHAT in (a, b]": B holds the opening bracket, the closing
                          one and that of the last bin, e.g. "(]]" or "[)]"
    data-i="N"            (activation histograms) the bins are coloured by N intervals

A bin's tooltip costs the page nothing beyond its count: written out as SVG `<title>`s they would
add ~5 KB a chart.

Interval colours: the interval samples' intervals are coloured by `interval_alphas`, every interval
its own shade of the activation colour (a1 for the lowest interval, a9 for the highest).

The number formatting helpers live here, below the page builder (`generator.site.builder`), because
chart labels and tooltips need them too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from generator.site.codec import LEVELS, varint_code

LEVEL_ALPHAS = (0.10, 0.18, 0.27, 0.36, 0.45, 0.55, 0.65, 0.76, 0.88)
"""the opacity of the activation colour of a1..a9 (static/style.css --a1..--a9)."""
CHART_WIDTH = 600


# ---------------------------------------------------------------------------------------------
# numbers for people


def sig(x: float, digits: int = 3) -> str:
    """A number for people: 3 significant digits, thousands separators, no exponent below 1e6."""
    if x is not None and -1000 < x < 1000:  # the common case first (NaN compares False)
        return f"{x:.{digits}g}"
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1000 and abs(x) < 1e6:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def sigs(values: Any) -> list[str]:
    """`sig` of each value of a sequence (a 1-D array or list of floats), in one format call
    when every value takes sig's common case (|x| < 1000): a packed shard formats ~40 values a
    latent, and a call per value was 6% of its time."""
    xs = [float(x) for x in (values.tolist() if isinstance(values, np.ndarray) else values)]
    if all(-1000 < x < 1000 for x in xs):  # False for NaN, like sig's own test
        return ("{:.3g}\n" * len(xs)).format(*xs).split("\n")[:-1]
    return [sig(x) for x in xs]


def signed(x: float) -> str:
    return ("+" if x > 0 else "") + sig(x)


def signeds(values: Any) -> list[str]:
    """`signed` of each value (`sigs`' one format call)."""
    xs = values.tolist() if isinstance(values, np.ndarray) else list(values)
    return [("+" if x > 0 else "") + text for x, text in zip(xs, sigs(xs), strict=True)]


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


def round3s(values: Any) -> list[float]:
    """round3 of each value (`sigs`' one format call: the index table rounds 1 M values a
    column at 1,048,576 latents)."""
    xs = np.asarray(values, dtype=np.float64).tolist()
    return list(map(float, ("{:.3g}\n" * len(xs)).format(*xs).split("\n")[:-1]))


def finite3s(values: Any) -> list[float | None]:
    """finite3 of each value."""
    array = np.asarray(values, dtype=np.float64)
    out: list[float | None] = list(round3s(array))
    for k in np.flatnonzero(~np.isfinite(array)).tolist():
        out[k] = None
    return out


def finite3(x: float) -> float | None:
    """round3 of a finite number, None (JSON null) otherwise."""
    return round3(float(x)) if math.isfinite(float(x)) else None


# ---------------------------------------------------------------------------------------------
# charts


@dataclass(frozen=True)
class Bar:
    cls: str
    d: str
    alpha: str = ""
    """the opacity of the activation colour (`--o`) of an interval-coloured bar (class `ai`)."""


@dataclass(frozen=True)
class Bins:
    """What a chart's bars count, for their tooltips (shipped as the `<svg>`'s data attributes;
    see the module docstring)."""

    counts: list[int]
    lo: float
    hi: float
    """the range, float32 values (what the store holds; `_shortest` writes them exactly)."""
    unit: str
    """what is counted, singular: "token", "vocabulary token", "latent"."""
    what: str
    """the binned quantity: "activation", "logit effect", "density"."""
    brackets: str
    """opening and closing bracket of a bin, and the closing bracket of the last one."""
    log: bool = False
    """bins are equal-width in log10 of the quantity (edges are 10 ** ...)."""
    intervals: int = 0
    """the activation histogram's bins are coloured by this many intervals (0: not)."""

    def edge(self, k: int) -> float:
        """The left edge of bin k (k = n: the right edge of the last bin); static/charts.js does
        the same arithmetic in the same order."""
        x = self.lo + k * (self.hi - self.lo) / len(self.counts)
        return 10 ** x if self.log else x

    def tip(self, k: int) -> str:
        """Bin k's tooltip: "12 tokens with activation in (0.31, 0.42] (interval 3)"."""
        n, c = len(self.counts), self.counts[k]
        close = self.brackets[2] if k == n - 1 else self.brackets[1]
        text = (f"{count(c)} {self.unit}{'' if c == 1 else 's'} with {self.what} in "
                f"{self.brackets[0]}{sig(self.edge(k))}, {sig(self.edge(k + 1))}{close}")
        if self.intervals:
            text += f" (interval {bin_interval(k, n, self.intervals) + 1})"
        return text

    @property
    def attrs(self) -> dict[str, str]:
        """The `<svg>`'s data attributes."""
        attrs = {"data-c": varint_code([int(c) for c in self.counts]),
                 "data-x": f"{_shortest(self.lo)} {_shortest(self.hi)}",
                 "data-t": f"{self.unit}|{self.what}|{self.brackets}"}
        if self.log:
            attrs["data-l"] = ""
        if self.intervals:
            attrs["data-i"] = str(self.intervals)
        return attrs


@dataclass(frozen=True)
class Chart:
    """A bar chart drawn at render time as inline SVG: one path per colour."""

    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str, str]]
    """(x, text-anchor, text) under the axis."""
    title: str
    bins: Bins


def bar_chart(bins: Bins, classes: Sequence[str], labels: list[tuple[float, str]], title: str,
              alphas: Sequence[str] | None = None, height: int = 100) -> Chart:
    """Equal-width bars scaled to the largest count, drawn as one step outline per run of bins
    sharing a class and opacity (compact: ~6 bytes a bin, neighbours of equal height merged).
    Non-empty bins stay >= 1 unit tall."""
    counts = bins.counts
    alphas = alphas if alphas is not None else [""] * len(counts)
    bar_w = CHART_WIDTH / max(1, len(counts))
    top = max(1, max(counts, default=0))
    heights = [0 if c <= 0 else max(1, round(height * c / top)) for c in counts]
    bars = []
    for k, end in _runs(classes, alphas):
        steps: list[str] = []
        for b in range(k, end + 1):
            y, x = f"V{height - heights[b]}", f"H{_coord((b + 1) * bar_w)}"
            if b > k and heights[b] == heights[b - 1]:
                steps[-1] = steps[-1][:steps[-1].index("H")] + x  # extend the same level
            else:
                steps.append(y + x)
        path = f"M{_coord(k * bar_w)} {height}{''.join(steps)}V{height}Z"
        bars.append(Bar(classes[k], path, alphas[k]))
    anchored = [(x * CHART_WIDTH, "start" if x == 0 else "end" if x == 1 else "middle", text)
                for x, text in labels]
    return Chart(width=CHART_WIDTH, height=height, bars=bars, labels=anchored, title=title,
                 bins=bins)


def _runs(classes: Sequence[str], alphas: Sequence[str]) -> list[tuple[int, int]]:
    """[first, last] bin of each maximal run of bins with the same (class, opacity)."""
    runs = []
    k = 0
    while k < len(classes):
        end = k
        while end + 1 < len(classes) and (classes[end + 1], alphas[end + 1]) == (classes[k],
                                                                                 alphas[k]):
            end += 1
        runs.append((k, end))
        k = end + 1
    return runs


def _coord(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def activation_chart(hist: np.ndarray, interval_counts: np.ndarray, peak: float) -> Chart:
    """Histogram of active positions (tokens), each bin coloured by the interval its centre
    falls in."""
    n_bins, n_int = len(hist), len(interval_counts)
    alphas = interval_alphas(n_int)
    bins = Bins([int(c) for c in hist], 0.0, _f32(peak), "token", "activation", "(]]",
                intervals=n_int)
    return bar_chart(bins, ["ai"] * n_bins, [(0, "0"), (1, sig(peak))],
                     f"Tokens per activation bin: {n_bins} bins over (0, {sig(peak)}], coloured "
                     "by interval", alphas=[alphas[bin_interval(k, n_bins, n_int)]
                                            for k in range(n_bins)])


def bin_interval(k: int, n_bins: int, n_intervals: int) -> int:
    """The interval that colours bin k: the one holding the bin's centre."""
    return min(n_intervals - 1, int((k + 0.5) * n_intervals / n_bins))


@lru_cache(maxsize=16)
def interval_alphas(n_intervals: int) -> tuple[str, ...]:
    """The opacity of the activation colour of each of n intervals, every one distinct: the
    a1..a9 opacities interpolated linearly from a1 (the lowest interval) to a9 (the highest), so
    that nine intervals get exactly a1..a9 and more get shades in between; written with as many
    decimals as it takes to keep all n apart (3 up to ~640 intervals)."""
    if n_intervals <= 1:
        return (_short(LEVEL_ALPHAS[-1], 2),)
    positions = [(LEVELS - 1) * j / (n_intervals - 1) for j in range(n_intervals)]
    values = []
    for p in positions:
        k = min(LEVELS - 2, int(p))
        values.append(LEVEL_ALPHAS[k] + (p - k) * (LEVEL_ALPHAS[k + 1] - LEVEL_ALPHAS[k]))
    for digits in range(3, 18):
        alphas = tuple(_short(v, digits) for v in values)
        if len(set(alphas)) == n_intervals:
            return alphas
    raise ValueError(f"cannot give {n_intervals} intervals distinct colours")


def _shortest(x: float) -> str:
    """A float32 value in the fewest digits that read back (as float32) to it: "3.2498126"."""
    text = str(np.float32(x))
    return text[:-2] if text.endswith(".0") else text


def _f32(x: float) -> float:
    """x as the float32 the page writes (browser and Python then do the same arithmetic)."""
    return float(_shortest(x))


def _short(x: float, digits: int) -> str:
    """x in [0, 1] with at most `digits` decimals, no leading zero: ".433"."""
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return text[1:] if text.startswith("0.") else text or "0"


def logit_chart(hist: np.ndarray, lo: float, hi: float) -> Chart:
    """Histogram of a latent's logit effect over the vocabulary, positive and negative bins."""
    n = len(hist)
    centres = [lo + (k + 0.5) * (hi - lo) / max(1, n) for k in range(n)]
    classes = ["lp" if c >= 0 else "ln" for c in centres]
    bins = Bins([int(c) for c in hist], _f32(lo), _f32(hi), "vocabulary token", "logit effect",
                "[)]")
    return bar_chart(bins, classes, [(0, sig(lo)), (1, sig(hi))],
                     f"Vocabulary tokens per logit-effect bin: {n} bins over "
                     f"[{sig(lo)}, {sig(hi)}]")


def density_chart(densities: np.ndarray) -> Chart | None:
    """Histogram of log10 density over the latents that fire (None when none does)."""
    alive = densities[densities > 0]
    if not len(alive):
        return None
    logs = np.log10(alive)
    lo = math.floor(float(logs.min()))
    n = 40
    hist, _ = np.histogram(logs, bins=n, range=(lo, 0.0))
    bins = Bins([int(c) for c in hist], float(lo), 0.0, "latent", "density", "[)]", log=True)
    return bar_chart(bins, ["a5"] * n, [(0, f"1e{lo}"), (1, "1")],
                     f"Latents per density bin: the {len(alive):,} latents that fire, {n} bins "
                     "equal in log10 density")
