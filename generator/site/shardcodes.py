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

from generator.site.builder import act_levels, dloss_marks
from generator.site.charts import sig
from generator.site.codec import _VARINT_TABLE, ACT_LEVELS, LEVELS, varint
from generator.site.contexts import ExampleView, IntervalGroup

Examples = tuple[list[ExampleView], list[IntervalGroup], dict[str, Any]]
"""(top examples, interval groups, {"m": max, "e": [code, ...]}): examples_of's result."""

_TABLE = np.array(_VARINT_TABLE, dtype=object)
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
    return _join(_strings(codes[inside]), np.cumsum(end - start))


class _Block:
    """A shard's shown examples as [E, ctx] arrays (the same numbers as _ExampleBlock)."""

    def __init__(self, pages: Any, rows: np.ndarray, latents: np.ndarray) -> None:
        data, ex, show = pages.data, pages.data.examples, pages.showing
        self.rows = rows
        self.seq = np.asarray(ex.seq[rows], dtype=np.int64)
        self.seq_rows = pages._seq_rows[rows]
        tokens = np.asarray(data.seq_tokens[self.seq_rows])
        self.bos = tokens == data.meta.bos_id
        acts = np.asarray(ex.acts[rows])
        self.width = acts.shape[1]
        self.centre = acts.argmax(axis=1)
        self.value = [sig(float(a)) for a in acts.max(axis=1)]
        self.active = (acts > 0) & ~self.bos
        self.levels = act_levels(acts, pages.max3_array[latents][:, None], self.active)
        self.is_top = pages.is_top[rows]
        before = np.where(self.is_top, show.window_top[0], show.window_interval[0])
        after = np.where(self.is_top, show.window_top[1], show.window_interval[1])
        self.start = np.maximum(0, self.centre - before)
        self.end = np.minimum(self.width, self.centre + after + 1)
        pos = np.arange(self.width)
        self.inside = (pos >= self.start[:, None]) & (pos < self.end[:, None])
        self.windows = list(zip(self.seq_rows.tolist(), self.start.tolist(), self.end.tolist(),
                                strict=True))
        self.milli = None if ex.dloss is None else dloss_marks(np.asarray(ex.dloss[rows]),
                                                               self.bos)
        self.cap = show.dloss_outside

    def kept_dloss(self) -> tuple[np.ndarray, np.ndarray]:
        """(the shipped Δloss positions as a mask, the cutoff per example): every marked position
        in the window, the `cap` largest |Δ| outside it (ties: the earlier position)."""
        n = len(self.rows)
        if self.milli is None:
            return np.zeros((n, self.width), bool), np.zeros(n, np.int64)
        size = np.abs(self.milli)
        outside = (size > 0) & ~self.inside
        if self.cap >= self.width:
            return size > 0, np.zeros(n, np.int64)
        # a key per outside position, unique and ordered as "larger |Δ| first, then earlier":
        # the cap smallest keys are the kept ones, the next is the largest left out
        span = self.width + 1
        key = np.where(outside, -size * span + np.arange(self.width), np.iinfo(np.int64).max)
        first_out = np.partition(key, self.cap, axis=1)[:, self.cap]
        kept = (size > 0) & (self.inside | (key < first_out[:, None]))
        over = outside.sum(axis=1) > self.cap
        cutoff = np.where(over, (first_out % span - first_out) // span, 0)
        return kept, cutoff

    def codes(self) -> list[str]:
        """Every example's code (generator/site/codec.py), in row order."""
        n = len(self.rows)
        act_in, act_out = self.active & self.inside, self.active & ~self.inside
        kept, cutoff = self.kept_dloss()
        n_in, n_out, n_dl = act_in.sum(1), act_out.sum(1), kept.sum(1)
        length = 7 + 2 * n_in + n_out + 2 * n_dl
        off = np.concatenate([[0], np.cumsum(length)])
        flat = np.zeros(int(off[-1]), dtype=np.int64)
        head = off[:-1]
        for k, column in enumerate((self.seq, self.start, self.end - self.start,
                                    self.centre - self.start, cutoff, n_in)):
            flat[head + k] = column
        flat[head + 6 + 2 * n_in] = n_out
        r, p = np.nonzero(act_in)
        j = _within(r, n)
        at = head[r] + 6 + 2 * j
        flat[at] = _gaps(r, p, self.start - 1)
        flat[at + 1] = self.levels[r, p]
        r, p = np.nonzero(act_out)
        colour = -(-LEVELS * self.levels[r, p] // ACT_LEVELS)
        flat[head[r] + 7 + 2 * n_in[r] + _within(r, n)] = (
            _gaps(r, p, np.full(n, -1)) * LEVELS + colour - 1)
        if self.milli is not None:
            r, p = np.nonzero(kept)
            v = self.milli[r, p]
            at = head[r] + 7 + 2 * n_in[r] + n_out[r] + 2 * _within(r, n)
            flat[at] = _gaps(r, p, np.full(n, -1))
            flat[at + 1] = np.where(v >= 0, 2 * v, -2 * v - 1)
        return _join(_strings(flat), off[1:])


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


def _strings(values: np.ndarray) -> list[str]:
    """The varint digits of every value."""
    small = values < len(_TABLE)
    if small.all():
        return _TABLE[values].tolist()
    out = _TABLE[np.where(small, values, 0)]
    for k in np.flatnonzero(~small).tolist():
        out[k] = varint(int(values[k]))
    return out.tolist()


def _join(parts: list[str], ends: np.ndarray) -> list[str]:
    """"".join of each run of `parts`, runs ending at `ends`."""
    out, at = [], 0
    for end in ends.tolist():
        out.append("".join(parts[at:end]))
        at = end
    return out


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
