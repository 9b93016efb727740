"""What the explainer and the scorers see of a latent: windows of the store's sequences as text,
with the latent's activation per token (docs/STATISTICS.md, "Explanation scores").

    shown      the explainer's: the latent's top examples, best first, then the first interval
               sample of each interval, highest interval first (so that it sees weak
               activations too)
    positives  held-out activating examples: its other interval samples whose sequence is not
               among the shown ones, up to `score_examples` taken in turn from every interval (so that the
               score covers weak activations too)
    negatives  sequences on which the latent is zero at every included position, from the
               store's `null_seqs` (generator/compute/nulls.py); none when the store predates them

A window is `window` tokens around the example's highest activation, which sits at
window - window // 4 (delphi's placement), or as near as the sequence's ends allow; a negative's
window starts at (latent x 2654435761 + sequence x 40503) mod (ctx - window + 1), so that reruns
see the same text. Token text: the vocabulary bytes decoded as one stream (a character split over
tokens belongs to the token that completes it).

Memory: one latent's windows at a time (a few KB).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np

from generator.store.schema import EXAMPLE_TOP, StoreData

NEGATIVE = -2
"""`Window.interval` of a non-activating window (top examples have -1)."""


@dataclass(frozen=True)
class Window:
    """A stretch of one sequence, as text per token."""

    seq: int
    start: int
    """its first position in the sequence."""
    tokens: list[str]
    acts: list[float]
    """the latent's activation per token (0 at excluded positions and in negatives)."""
    interval: int
    """the example's interval (-1: a top example; NEGATIVE: a non-activating window)."""

    @property
    def activating(self) -> bool:
        return self.interval != NEGATIVE


@dataclass(frozen=True)
class LatentSamples:
    latent: int
    shown: list[Window]
    positives: list[Window]
    negatives: list[Window]


def token_texts(vocab: list[bytes], ids: np.ndarray) -> list[str]:
    """The text of each token of a stretch, decoded as one UTF-8 stream (their concatenation is
    the stretch's bytes decoded with errors="replace")."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    out = [decoder.decode(vocab[int(t)]) for t in ids]
    if out:
        out[-1] += decoder.decode(b"", final=True)
    return out


def samples_of(data: StoreData, latent: int, shown: int, width: int, per_interval: int = 1,
               held_out: int = 1 << 30) -> LatentSamples:
    """Latent `latent`'s windows: the explainer's (up to `shown` top examples, then the first
    `per_interval` samples of each interval, highest interval first), up to `held_out` held-out
    interval samples (taken in turn from each interval, lowest first, in rank order) and the
    non-activating windows. A sequence the explainer sees is never held out."""
    ex = data.examples
    lo, hi = np.searchsorted(ex.latent, [latent, latent + 1])
    tops = [r for r in range(lo, hi) if ex.kind[r] == EXAMPLE_TOP][:shown]
    groups = _interval_groups(data, range(lo, hi), {int(ex.seq[r]) for r in tops})
    explained = [r for j in sorted(groups, reverse=True) for r in groups[j][:per_interval]]
    seen = {int(ex.seq[r]) for r in tops + explained}
    held = _in_turn(_interval_groups(data, range(lo, hi), seen), held_out)
    return LatentSamples(latent, [_example(data, r, width) for r in tops + explained],
                         [_example(data, r, width) for r in held], _negatives(data, latent, width))


def _interval_groups(data: StoreData, rows: range, unless: set[int]) -> dict[int, list[int]]:
    """The interval samples among `rows` whose sequence is not in `unless`, by interval, in
    rank order."""
    ex = data.examples
    out: dict[int, list[int]] = {}
    for r in rows:
        if ex.kind[r] != EXAMPLE_TOP and int(ex.seq[r]) not in unless:
            out.setdefault(int(ex.interval[r]), []).append(r)
    return out


def _in_turn(groups: dict[int, list[int]], n: int) -> list[int]:
    """Up to n rows taken in turn from each group (the first of every group, then the second,
    ...), in row order."""
    turns = zip_longest(*(groups[j] for j in sorted(groups)))
    taken = [r for turn in turns for r in turn if r is not None][:n]
    return sorted(taken)


def _example(data: StoreData, row: int, width: int) -> Window:
    ex = data.examples
    acts = np.asarray(ex.acts[row], dtype=np.float64)
    seq = int(ex.seq[row])
    start = int(np.clip(int(np.argmax(acts)) - (width - width // 4), 0, max(0, len(acts) - width)))
    interval = -1 if ex.kind[row] == EXAMPLE_TOP else int(ex.interval[row])
    return _window(data, seq, start, width, acts, interval)


def _negatives(data: StoreData, latent: int, width: int) -> list[Window]:
    nulls = data.latents.null_seqs
    if nulls is None:
        return []
    out = []
    for seq in (int(s) for s in nulls[latent] if s >= 0):
        ctx = len(data.tokens_of(seq))
        start = (latent * 2654435761 + seq * 40503) % max(1, ctx - width + 1)
        out.append(_window(data, seq, start, width, np.zeros(ctx), NEGATIVE))
    return out


def _window(data: StoreData, seq: int, start: int, width: int, acts: np.ndarray,
            interval: int) -> Window:
    ids = data.tokens_of(seq)[start:start + width]
    return Window(seq, start, token_texts(data.vocab, ids),
                  [float(a) for a in acts[start:start + len(ids)]], interval)


def marked(window: Window, threshold: float = 0.3, marks: set[int] | None = None) -> str:
    """The window's text with <<...>> around the runs of marked tokens: those at or above
    `threshold` x its highest activation (delphi's explainer and fuzzing scorer), or the
    positions `marks` (a fuzzing scorer's wrongly marked non-activating window)."""
    top = max(window.acts, default=0.0)
    hot = marks if marks is not None else {
        k for k, a in enumerate(window.acts) if top > 0 and a >= threshold * top}
    out, inside = [], False
    for k, text in enumerate(window.tokens):
        if (k in hot) != inside:
            out.append("<<" if not inside else ">>")
            inside = not inside
        out.append(text)
    return "".join(out) + (">>" if inside else "")


def plain(window: Window) -> str:
    return "".join(window.tokens)
