"""The example codes of a whole shard of latents at once, with array operations: the packed
site's hot loop (generator/site/packed.py), 40–70 examples a latent.

`shard_examples` gives, for each latent, exactly what `PageBuilder.examples_of(i, html=False)`
gives (its top examples, interval groups and {"m", "e"} data: the codes of
generator/site/codec.py), and `window_codes` each example's window symbols; the per-example
builder (`generator.site.builder._ExampleBlock`) stays the reference, and the tests compare the
two on every latent of the fake stores and the demo.

Memory: the shard's examples as [E, ctx] arrays, a few of them at once (E = shard latents x
shown examples, ~4,500 at 64 latents x 70; x ctx 128 x 8 bytes: ~5 MB each).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from markupsafe import Markup

from generator.site.builder import act_levels
from generator.site.charts import sigs
from generator.site.codec import ACT_LEVELS, DLOSS_MARK_MILLI, LEVELS, varint_runs
from generator.site.contexts import ExampleView, IntervalGroup

Examples = tuple[list[ExampleView], list[IntervalGroup], dict[str, Any]]
"""(top examples, interval groups, {"m": max, "e": [code, ...]}): examples_of's result."""

_NO_HTML = Markup("")
"""the html of every packed example (made once: a Markup per example was 7% of a shard)."""


def shard_examples(pages: Any, lo: int, hi: int) -> list[Examples]:
    """examples_of(i, html=False) for every latent i in [lo, hi) (`pages`: a PageBuilder)."""
    rows_of = [pages.shown_rows(i) for i in range(lo, hi)]
    rows = np.concatenate(rows_of) if rows_of else np.zeros(0, np.int64)
    if not len(rows):
        return [_group(pages, i, [], [], [], np.zeros(0, bool), rows) for i in range(lo, hi)]
    block = _Block(pages, rows, np.repeat(np.arange(lo, hi), [len(r) for r in rows_of]))
    codes = block.codes()
    out, at = [], 0
    for i, latent_rows in zip(range(lo, hi), rows_of, strict=True):
        k = slice(at, at + len(latent_rows))
        out.append(_group(pages, i, codes[k], block.value[k], block.windows[k],
                          block.is_top[k], latent_rows))
        at += len(latent_rows)
    return out


def window_codes(symbols: Any, windows: list[tuple[int, int, int]]) -> list[str]:
    """The varint code of each window's symbols (`symbols`: the writer's SeqSymbols)."""
    if not windows:
        return []
    seq_rows, start, end = (np.array(col, dtype=np.int64) for col in zip(*windows, strict=True))
    codes = symbols.codes[np.searchsorted(symbols.rows, seq_rows)]
    pos = np.arange(codes.shape[1])
    inside = (pos >= start[:, None]) & (pos < end[:, None])
    return varint_runs(codes[inside], np.cumsum(end - start))


class _Block:
    """A shard's shown examples (the same numbers as _ExampleBlock): the activations and Δloss
    as sparse entries (row-major: by example, then position), since a dense pass over the
    [E, ctx] arrays per step cost more than the few active positions do."""

    def __init__(self, pages: Any, rows: np.ndarray, latents: np.ndarray) -> None:
        data, ex, show = pages.data, pages.data.examples, pages.showing
        self.rows = rows
        self.seq = np.asarray(ex.seq[rows], dtype=np.int64)
        self.seq_rows = pages._seq_rows[rows]
        bos = np.asarray(data.seq_tokens[self.seq_rows]) == data.meta.bos_id
        acts = np.asarray(ex.acts[rows])
        self.width = acts.shape[1]
        self.centre = acts.argmax(axis=1)
        self.value = sigs(acts.max(axis=1))
        self.is_top = pages.is_top[rows]
        before = np.where(self.is_top, show.window_top[0], show.window_interval[0])
        after = np.where(self.is_top, show.window_top[1], show.window_interval[1])
        self.start = np.maximum(0, self.centre - before)
        self.end = np.minimum(self.width, self.centre + after + 1)
        self.windows = list(zip(self.seq_rows.tolist(), self.start.tolist(), self.end.tolist(),
                                strict=True))
        # the active positions (not BOS) and their levels: act_levels, entry by entry
        r, p = _nonzero(acts > 0)
        keep = ~bos[r, p]
        self.act_r, self.act_p = r[keep], p[keep]
        self.levels = act_levels(acts[self.act_r, self.act_p],
                                 pages.max3_array[latents][self.act_r],
                                 np.ones(len(self.act_r), dtype=bool))
        self.act_inside = self._inside(self.act_r, self.act_p)
        self.dloss = None if ex.dloss is None else self._dloss(np.asarray(ex.dloss[rows]), bos)
        self.cap = show.dloss_outside

    def _inside(self, r: np.ndarray, p: np.ndarray) -> np.ndarray:
        return (p >= self.start[r]) & (p < self.end[r])

    def _dloss(self, dloss: np.ndarray,
               bos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """dloss_marks' nonzero entries (example, position, milli): |round(1000 Δ)| >= 10
        exactly where |1000 Δ| >= 9.5 (in Δ's own precision), so only those are rounded."""
        before = dloss[:, :-1]
        r, t = _nonzero(np.abs(before * 1000) >= DLOSS_MARK_MILLI - 0.5)  # False for NaN
        milli = np.round(np.nan_to_num(before[r, t]) * 1000).astype(np.int64)
        keep = (np.abs(milli) >= DLOSS_MARK_MILLI) & ~bos[r, t + 1]
        return r[keep], t[keep] + 1, milli[keep]

    def kept_dloss(self) -> tuple[np.ndarray, np.ndarray]:
        """(which Δloss entries ship, the cutoff per example): every one in the window, the
        `cap` largest |Δ| outside it (ties: the earlier position); the cutoff is the largest
        |Δ| left out (0: none)."""
        n = len(self.rows)
        assert self.dloss is not None
        r, p, milli = self.dloss
        kept = self._inside(r, p)
        out = np.flatnonzero(~kept)
        size = np.abs(milli[out])
        # by example, then larger |Δ| first, then position (entries come by position: a
        # stable sort keeps that order among ties)
        top = int(size.max(initial=0)) + 1
        if n * top < 2 ** 62:
            order = out[np.argsort(r[out] * top + (top - 1 - size), kind="stable")]
        else:
            order = out[np.lexsort((p[out], -size, r[out]))]
        rank = _within(r[order], n)
        kept[order[rank < self.cap]] = True
        cutoff = np.zeros(n, dtype=np.int64)
        first_out = order[rank == self.cap]
        cutoff[r[first_out]] = np.abs(milli[first_out])
        return kept, cutoff

    def codes(self) -> list[str]:
        """Every example's code (generator/site/codec.py), in row order."""
        n = len(self.rows)
        inside = self.act_inside
        n_in = np.bincount(self.act_r[inside], minlength=n)
        n_out = np.bincount(self.act_r[~inside], minlength=n)
        if self.dloss is not None:
            kept, cutoff = self.kept_dloss()
            dl_r, dl_p, dl_v = (column[kept] for column in self.dloss)
        else:
            cutoff = np.zeros(n, dtype=np.int64)
            dl_r = dl_p = dl_v = np.zeros(0, dtype=np.int64)
        length = 7 + 2 * n_in + n_out + 2 * np.bincount(dl_r, minlength=n)
        off = np.concatenate([[0], np.cumsum(length)])
        flat = np.zeros(int(off[-1]), dtype=np.int64)
        head = off[:-1]
        for k, column in enumerate((self.seq, self.start, self.end - self.start,
                                    self.centre - self.start, cutoff, n_in)):
            flat[head + k] = column
        flat[head + 6 + 2 * n_in] = n_out
        r, p, lv = self.act_r[inside], self.act_p[inside], self.levels[inside]
        at = head[r] + 6 + 2 * _within(r, n)
        flat[at] = _gaps(r, p, self.start - 1)
        flat[at + 1] = lv
        r, p, lv = self.act_r[~inside], self.act_p[~inside], self.levels[~inside]
        colour = -(-LEVELS * lv // ACT_LEVELS)
        flat[head[r] + 7 + 2 * n_in[r] + _within(r, n)] = (
            _gaps(r, p, np.full(n, -1)) * LEVELS + colour - 1)
        at = head[dl_r] + 7 + 2 * n_in[dl_r] + n_out[dl_r] + 2 * _within(dl_r, n)
        flat[at] = _gaps(dl_r, dl_p, np.full(n, -1))
        flat[at + 1] = np.where(dl_v >= 0, 2 * dl_v, -2 * dl_v - 1)
        return varint_runs(flat, off[1:])


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.nonzero of a 2-D mask (row-major), from its flat indices: 2.5x faster."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _within(r: np.ndarray, n: int) -> np.ndarray:
    """Each entry's index among the entries of its row (r ascending)."""
    first = np.searchsorted(r, np.arange(n))
    return np.arange(len(r)) - first[r]


def _gaps(r: np.ndarray, p: np.ndarray, before: np.ndarray) -> np.ndarray:
    """p minus the previous position of the same row (or before[row]) minus one."""
    prev = before[r].copy()
    same = np.zeros(len(r), dtype=bool)
    same[1:] = r[1:] == r[:-1]
    prev[1:][same[1:]] = p[:-1][same[1:]]
    return p - prev - 1


def _group(pages: Any, i: int, codes: list[str], values: list[str],
           windows: list[tuple[int, int, int]], is_top: np.ndarray, rows: np.ndarray) -> Examples:
    """examples_of's grouping: top examples, then interval groups (highest first)."""
    ex = pages.data.examples
    top: list[ExampleView] = []
    by_interval: dict[int, list[ExampleView]] = defaultdict(list)
    for n, (row, window) in enumerate(zip(rows.tolist(), windows, strict=True)):
        view = ExampleView(n, values[n], _NO_HTML, window)
        if is_top[n]:
            top.append(view)
        else:
            by_interval[int(ex.interval[row])].append(view)
    return top, pages.interval_groups(i, by_interval), {"m": pages.max3[i], "e": codes}
