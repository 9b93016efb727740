"""What the explainer and the scorers see: windows placed as documented, token text that is the
bytes decoded as one stream, marks, and the held-out examples taken in turn from the intervals."""

from __future__ import annotations

import numpy as np

from generator.explain.samples import NEGATIVE, Window, marked, plain, samples_of, token_texts
from generator.store.schema import EXAMPLE_TOP
from tests.fake_store import HOSTILE_VOCAB, make_store


def test_token_texts_join_to_the_bytes_decoded() -> None:
    ids = np.arange(len(HOSTILE_VOCAB))
    for lo, hi in ((0, len(ids)), (3, 9), (8, 9), (9, 12), (8, 10)):  # 8, 9: the euro sign
        texts = token_texts(HOSTILE_VOCAB, ids[lo:hi])
        assert len(texts) == hi - lo
        assert "".join(texts) == b"".join(HOSTILE_VOCAB[lo:hi]).decode("utf-8", "replace")
    assert token_texts(HOSTILE_VOCAB, ids[8:10]) == ["", "€"]


def test_windows_as_documented() -> None:
    data = make_store()
    ex = data.examples
    for latent in range(11):
        s = samples_of(data, latent, shown=3, width=8)
        rows = np.flatnonzero(ex.latent == latent)
        tops = [r for r in rows if ex.kind[r] == EXAMPLE_TOP][:3]
        assert [w.seq for w in s.shown[:len(tops)]] == [int(ex.seq[r]) for r in tops]
        extra = s.shown[len(tops):]  # then one sample of each interval, highest first
        assert [w.interval for w in extra] == sorted({w.interval for w in extra}, reverse=True)
        for w, r in zip(s.shown[:len(tops)], tops, strict=True):
            peak = int(np.argmax(ex.acts[r]))
            assert w.start == min(max(0, peak - 6), 16 - 8) and len(w.tokens) == 8
            assert w.acts == [float(a) for a in ex.acts[r][w.start:w.start + 8]]
        seen = {w.seq for w in s.shown}
        assert all(w.seq not in seen and w.interval >= 0 for w in s.positives)
        nulls = [int(q) for q in data.latents.null_seqs[latent] if q >= 0]
        assert [w.seq for w in s.negatives] == nulls
        for w in s.negatives:
            assert w.interval == NEGATIVE and not w.activating and set(w.acts) == {0.0}
            assert w.start == (latent * 2654435761 + w.seq * 40503) % 9
            assert plain(w) == b"".join(data.vocab[t] for t in data.tokens_of(w.seq)[
                w.start:w.start + 8]).decode("utf-8", "replace")


def test_held_out_examples_are_taken_in_turn_from_the_intervals() -> None:
    data = make_store()
    every = samples_of(data, 4, shown=1, width=8, per_interval=0)
    intervals = [w.interval for w in every.positives]
    assert len(set(intervals)) >= 2
    capped = samples_of(data, 4, shown=1, width=8, per_interval=0,
                        held_out=len(set(intervals)))
    assert sorted(w.interval for w in capped.positives) == sorted(set(intervals))


def test_marks_wrap_runs_at_three_tenths_of_the_peak() -> None:
    w = Window(0, 0, ["a", "b", "c", "d", "e"], [0.0, 3.0, 10.0, 2.9, 3.0], 1)
    assert marked(w) == "a<<bc>>d<<e>>"
    assert marked(w, marks={0, 4}) == "<<a>>bcd<<e>>"
    assert plain(w) == "abcde"
