"""The example wire codec: what a latent page ships to the browser for tooltips and expansion,
and the token classes that the page and the browser compute alike. The reader is
static/examples.js (`exampleOf`), which must follow this format exactly; `decode_example` is the
reference decoder the tests compare it with.

Per-page data for tooltips and expansion is one JSON blob, `{"m": max, "e": "<ex> <ex> ..."}`:
`m` is the latent's max (3 significant digits) and `e` holds one space-separated code per
example (`e[n]` is the example with anchor `ex-n`). A code is a run of unsigned varints in a
URL-safe base-64 alphabet (B64: a digit is a final 5-bit group below 32, a continuation group
from 32, least significant group first; see `varint`), for the browser to decode (static/examples.js):

    seq, start, end - start, peak - start, cut, n_in, n_in x (position gap, activation level),
    n_out, n_out x (position gap * LEVELS + colour - 1), then until the end (position gap,
    zigzag Δloss)

where [start, end) are the positions of the server-rendered window, `peak` its max position, a
position gap is the distance to the previous listed position minus one (the first counts from
start - 1 for the n_in activations inside the window, from -1 otherwise). Inside the window an
activation ships as its level 1..ACT_LEVELS (round(ACT_LEVELS * act / max), clipped; only nonzero
activations, shown as "≈ level * max / ACT_LEVELS"); outside it, for the expanded view, only as
its colour class 1..LEVELS (`level`), packed with its gap into one digit when the gap is below 3
(tooltips there give the colour's range of values). Δloss is attributed to the token being
predicted (position t+1 gets dloss[t]), in units of 1e-3 nats, zigzag-coded (v >= 0: 2v, else
-2v-1), omitting |Δloss| < 0.01 (the tooltip then says so); outside the window only the
DLOSS_OUTSIDE largest are kept, and `cut` is the largest |Δloss| (milli) left out (0: none).
`decode_example` is the reference decoder.

In the server-rendered window only tokens that carry information are elements (`<i class=..>`:
active, underlined or the max; a class-less `<i>` is HELPED_ONLY); the others are bare text,
which keeps pages small. So the k-th `<i>` of a window that is not `.bos` is at the k-th
position of sorted(acts ∪ Δloss ∪ {peak}) within [start, end); the browser relies on exactly
this. Expanded sequences make every token an element.

Positions whose token is the store's `bos_id` (BOS / document boundaries) are excluded from every
statistic: they never carry an activation or a Δloss here, and render as a muted `<i class=bos>`
marker (BOS_HTML) instead of their text, in the window and in the expanded view alike (the
sequence files encode them as the number 0).
"""

from __future__ import annotations

import numpy as np
from markupsafe import Markup

from generator.site.search import B64, dumps

LEVELS = 9
"""activation colour classes a1..a9 (tokens, the density histogram and, interpolated, intervals)."""
DLOSS_MARK_MILLI = 10
"""|Δloss| (in 1e-3 nats) from which a token is underlined; smaller values are left out of the
page data (tooltips then say |Δloss| < 0.01)."""


ACT_LEVELS = 1000
"""activations ship as an integer level 1..ACT_LEVELS of the latent max (±0.05% of max)."""


DLOSS_OUTSIDE = 12
"""outside the server-rendered window, only this many largest |Δloss| per example are shipped
(for the expanded view; the entry records the cutoff so tooltips stay truthful)."""


def append_acts(values: list[int], positions: list[int], levels: list[int], start: int,
                 end: int) -> None:
    """n_in, the (gap, level) pairs inside [start, end), n_out, the packed (gap, colour) values
    outside it (module docstring)."""
    lo = next((n for n, p in enumerate(positions) if p >= start), len(positions))
    hi = next((n for n, p in enumerate(positions) if p >= end), len(positions))
    values.append(hi - lo)
    prev = start - 1
    for p, lvl in zip(positions[lo:hi], levels[lo:hi], strict=True):
        values.append(p - prev - 1)
        values.append(lvl)
        prev = p
    values.append(len(positions) - (hi - lo))
    prev = -1
    for p, lvl in zip(positions[:lo] + positions[hi:], levels[:lo] + levels[hi:], strict=True):
        values.append((p - prev - 1) * LEVELS + COLOUR[lvl] - 1)
        prev = p


def append_gaps(values: list[int], positions: list[int], items: list[int]) -> None:
    """(gap to the previous position minus one, item) pairs, the first gap counted from -1."""
    prev = -1
    for p, item in zip(positions, items, strict=True):
        values.append(p - prev - 1)
        values.append(item)
        prev = p


def act_level(act: float, peak: float) -> int:
    """The shipped activation level 1..ACT_LEVELS of a nonzero activation (0 when inactive)."""
    if act <= 0 or peak <= 0:
        return 0
    return max(1, min(ACT_LEVELS, round(ACT_LEVELS * act / peak)))


def level(act_lvl: int) -> int:
    """Colour class 1..LEVELS of a shipped activation level (0 when inactive); the browser
    computes the same from the same integer, so window and expanded view always agree."""
    if act_lvl <= 0:
        return 0
    return min(LEVELS, -(-LEVELS * act_lvl // ACT_LEVELS))


def token_classes(act_lvl: int, is_max: bool, dloss_milli: int) -> str:
    """CSS classes of one token: colour level, max marker, Δloss underline (order matters: JS
    builds the same string)."""
    mark = 1 if dloss_milli >= DLOSS_MARK_MILLI else -1 if dloss_milli <= -DLOSS_MARK_MILLI else 0
    return CLASSES[(level(act_lvl), is_max, mark)]


def _class_string(lv: int, is_max: bool, mark: int) -> str:
    classes = []
    if lv:
        classes.append(f"a{lv}")
    if is_max:
        classes.append("m")
    if mark > 0:
        classes.append("p")
    elif mark < 0:
        classes.append("n")
    return " ".join(classes)


COLOUR = [level(x) for x in range(ACT_LEVELS + 1)]
"""colour class by shipped activation level."""


CLASSES = {(lv, is_max, mark): _class_string(lv, is_max, mark)
            for lv in range(LEVELS + 1) for is_max in (False, True) for mark in (-1, 0, 1)}
"""classes by (colour level, is max, Δloss mark -1/0/+1): the window's tokens look them up."""


def varint(x: int) -> str:
    """An unsigned integer in B64 digits, 5 bits each, least significant first; every digit but
    the last has the continuation bit (32) set."""
    if x < 0:
        raise ValueError(f"varint of a negative number {x}")
    out = []
    while x >= 32:
        out.append(B64[32 + (x & 31)])
        x >>= 5
    out.append(B64[x])
    return "".join(out)


_VARINT_TABLE = [varint(x) for x in range(1 << 15)]


def varint_code(values: list[int]) -> str:
    """`"".join(varint(v) for v in values)`, by table for the common small values."""
    table, n = _VARINT_TABLE, len(_VARINT_TABLE)
    return "".join([table[v] if 0 <= v < n else varint(v) for v in values])


_VARINT_ARRAY = np.array(_VARINT_TABLE, dtype=object)


def varint_runs(values: np.ndarray, ends: np.ndarray) -> list[str]:
    """`varint_code` of each run of `values` (non-negative integers), the runs ending at
    `ends` (ascending; the last is len(values)): a table lookup for the whole array, then one
    join per run (a shard's example codes, a file of sequences)."""
    if len(values) and values.min() < 0:
        raise ValueError(f"varint of a negative number {int(values.min())}")
    small = values < len(_VARINT_ARRAY)
    digits = _VARINT_ARRAY[np.where(small, values, 0)]
    for k in np.flatnonzero(~small).tolist():
        digits[k] = varint(int(values[k]))
    parts = digits.tolist()
    out, at = [], 0
    for end in ends.tolist():
        out.append("".join(parts[at:end]))
        at = end
    return out


def read_varints(code: str) -> list[int]:
    values, value, shift = [], 0, 0
    for char in code:
        digit = B64.index(char)
        value |= (digit & 31) << shift
        if digit >= 32:
            shift += 5
        else:
            values.append(value)
            value, shift = 0, 0
    if shift:
        raise ValueError(f"truncated varint in {code!r}")
    return values


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def encode_example(seq: int, start: int, end: int, peak: int, cut: int, acts: dict[int, int],
                   dloss: dict[int, int]) -> str:
    """One example's code (module docstring): acts and dloss map position -> level / milli."""
    values = [seq, start, end - start, peak - start, cut]
    positions = sorted(acts)
    append_acts(values, positions, [acts[p] for p in positions], start, end)
    prev = -1
    for p in sorted(dloss):
        values += [p - prev - 1, _zigzag(dloss[p])]
        prev = p
    return "".join(varint(v) for v in values)


def decode_example(code: str) -> tuple[int, int, int, int, int, dict[int, int], dict[int, int],
                                       dict[int, int]]:
    """(seq, start, end, peak, cut, {pos: act level}, {pos: colour}, {pos: Δloss milli}) of an
    example code: activation levels inside the window, colour classes outside it."""
    v = read_varints(code)
    seq, start, width, peak, cut, n_in = v[:6]
    acts: dict[int, int] = {}
    colours: dict[int, int] = {}
    dloss: dict[int, int] = {}
    k, pos = 6, start - 1
    for _ in range(n_in):
        pos += v[k] + 1
        acts[pos] = v[k + 1]
        k += 2
    n_out, k, pos = v[k], k + 1, -1
    for _ in range(n_out):
        pos += v[k] // LEVELS + 1
        colours[pos] = v[k] % LEVELS + 1
        k += 1
    pos = -1
    for j in range(k, len(v), 2):
        pos += v[j] + 1
        z = v[j + 1]
        dloss[pos] = z // 2 if z % 2 == 0 else -(z + 1) // 2
    return seq, start, start + width, start + peak, cut, acts, colours, dloss


def dloss_milli(dloss: np.ndarray, start: int, end: int,
                 bos: np.ndarray) -> tuple[dict[int, int], int]:
    """Δloss per predicted-token position (t+1 <- dloss[t]) in 1e-3 nats, |Δ| < 0.01 and BOS
    positions dropped; outside [start, end) only the DLOSS_OUTSIDE largest. Returns them and the
    cutoff (the largest dropped |Δ| outside the window, 0 if none was dropped for the cap)."""
    milli = np.round(np.nan_to_num(dloss[:-1]) * 1000).astype(np.int64)
    positions = np.flatnonzero((np.abs(milli) >= DLOSS_MARK_MILLI) & ~bos[1:]) + 1
    inside = [int(p) for p in positions if start <= p < end]
    outside = sorted((int(p) for p in positions if not start <= p < end),
                     key=lambda p: (-abs(int(milli[p - 1])), p))
    kept, dropped = outside[:DLOSS_OUTSIDE], outside[DLOSS_OUTSIDE:]
    cutoff = max((abs(int(milli[p - 1])) for p in dropped), default=0)
    return {p: int(milli[p - 1]) for p in inside + kept}, cutoff


def script_json(value: object) -> Markup:
    """JSON safe inside an inline <script> element (no `<`, `>` or `&`)."""
    raw = dumps(value).decode()
    return Markup(raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
