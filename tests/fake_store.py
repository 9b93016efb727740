"""Hand-made but internally consistent `StoreData` for render tests: no model, no torch.

`make_store()` builds a tiny store (12 latents, one dead, ctx 16) over a vocabulary full of
hostile tokens (markup, quotes, RTL override, NUL, emoji, CJK, partial UTF-8, whitespace), with
BOS (token 0, `<|endoftext|>`) at position 0 and at document boundaries mid-sequence.
`make_scaled_store()` builds a realistic-shaped one at the default settings (k=20, 10 intervals x 5
samples, ctx 128) to measure site size per latent.

Every statistic is computed from one dense activation array with plain numpy, following docs/STATISTICS.md,
so the pages show numbers that agree with each other. BOS positions are excluded from every
statistic, as the engine does: zero activation, no Δloss for predicting them.
"""

from __future__ import annotations

import math

import numpy as np

from generator.store.schema import (
    EXAMPLE_INTERVAL,
    EXAMPLE_TOP,
    Examples,
    LatentTable,
    StoreData,
    StoreMeta,
    TokenLatents,
)

HOSTILE_VOCAB: list[bytes] = [
    b"<|endoftext|>",
    b"</script>",
    b"<img src=x onerror=alert(1)>",
    b"\"quoted' &amp;",
    "\u202eevil".encode(),
    b"\x00",
    "😀".encode(),
    "中文".encode(),
    b"\xe2\x82",  # with the next token: the euro sign
    b"\xac",
    b"\n",
    b"\t",
    b" ",
    b"\xff",  # never a character
    b"    ",
    b"\n\n",
    *[w.encode() for w in (
        " the", " cat", " sat", " on", " mat", "def", " self", ".", "(", ")", ":", " dog",
        "import", " os", " return", " None", " x", " =", " 1", "+", " euro", " price", "ing",
    )],
]
BOS_ID = 0
"""`<|endoftext|>` in both vocabularies: the store's bos_id."""
EXPLANATIONS = {
    0: "cats sitting on mats",
    1: "HTML </script><img src=x onerror=alert(1)> injection",
    2: "euro € currency",
    5: "Python self attribute",
}


def make_store(optional: bool = True, seed: int = 0) -> StoreData:
    """The small hostile store: 12 latents (latent 11 is dead), 30 sequences of 16 tokens."""
    rng = np.random.default_rng(seed)
    vocab = list(HOSTILE_VOCAB)
    tokens = _hostile_tokens(rng, n_seqs=30, ctx=16, vocab_size=len(vocab))
    acts = _sparse_acts(rng, tokens, d_sae=12, density=(0.05, 0.3))
    acts[..., 11] = 0.0
    # quality flags (generator.compute.quality): 7 fires on one token only, 9 mostly at first positions
    # (right after a BOS), 4 mostly at BOS positions (bos_acts: excluded from the rest)
    acts[..., 7] *= tokens == np.bincount(tokens[acts[..., 7] > 0]).argmax()
    acts[..., 9] *= np.where(_first_positions(tokens), 40.0, 1.0)
    extra = np.random.default_rng(seed + 101)
    bos_acts = np.where(extra.random(acts.shape) < 0.3, extra.exponential(0.05, acts.shape), 0.0)
    bos_acts[..., 4] = 50.0
    bos_acts *= (tokens == BOS_ID)[..., None]
    return build_store(acts, tokens, vocab, rng, optional=optional, k=4, n_bins=12,
                       n_intervals=3, m=2, n_logits=5, logit_bins=10, n_nb=3, n_top=5,
                       bos_acts=bos_acts)


def make_scaled_store(d_sae: int = 40, n_seqs: int = 1500, seed: int = 1) -> StoreData:
    """Default-settings store with realistic shapes (GPT-2-like vocab of word pieces)."""
    rng = np.random.default_rng(seed)
    vocab = _wordlike_vocab(rng, 3000)
    tokens = 1 + rng.choice(len(vocab) - 1, size=(n_seqs, 128), p=_zipf(len(vocab) - 1))
    tokens[:, 0] = BOS_ID
    boundaries = rng.random(n_seqs) < 0.5  # documents of ~250 tokens packed into 128-token rows
    tokens[boundaries, rng.integers(1, 128, size=int(boundaries.sum()))] = BOS_ID
    acts = _sparse_acts(rng, tokens, d_sae=d_sae, density=(0.002, 0.05))
    return build_store(acts, tokens, vocab, rng, optional=True, k=20, n_bins=50, n_intervals=10,
                       m=5, n_logits=10, logit_bins=50, n_nb=5, n_top=10)


# ---------------------------------------------------------------------------------------------
# corpus and activations


def _first_positions(tokens: np.ndarray) -> np.ndarray:
    """Included positions right after a BOS."""
    out = np.zeros(tokens.shape, dtype=bool)
    out[:, 1:] = (tokens[:, 1:] != BOS_ID) & (tokens[:, :-1] == BOS_ID)
    return out


def _hostile_tokens(rng: np.random.Generator, n_seqs: int, ctx: int, vocab_size: int) -> np.ndarray:
    tokens = rng.integers(1, vocab_size, size=(n_seqs, ctx))
    tokens[:, 0] = BOS_ID
    tokens[::3, 5:7] = [8, 9]  # a euro sign split across two tokens
    tokens[1::4, 3:5] = [1, 2]  # markup next to each other
    tokens[2::5, 8] = 8  # a partial character that never completes
    tokens[::4, 10] = BOS_ID  # document boundaries mid-sequence
    tokens[2::10, 9] = BOS_ID  # ... one right after a partial character, one doubled
    return tokens


def _wordlike_vocab(rng: np.random.Generator, size: int) -> list[bytes]:
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    vocab = [b"<|endoftext|>", b"\n", b"\n\n", b" ", b"    ", b".", b",", b"(", b")", b":"]
    while len(vocab) < size:
        word = "".join(rng.choice(letters, size=int(rng.integers(1, 7))))
        vocab.append((" " + word if rng.random() < 0.7 else word).encode())
    return vocab


def _zipf(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()


def _sparse_acts(rng: np.random.Generator, tokens: np.ndarray, d_sae: int,
                 density: tuple[float, float]) -> np.ndarray:
    """Each latent fires on a few trigger tokens plus noise, with exponential magnitudes."""
    n_seqs, ctx = tokens.shape
    acts = np.zeros((n_seqs, ctx, d_sae), dtype=np.float32)
    vocab_size = int(tokens.max()) + 1
    for i in range(d_sae):
        triggers = rng.choice(np.arange(1, vocab_size), size=3, replace=False)
        on_trigger = np.isin(tokens, triggers) & (rng.random(tokens.shape) < 0.8)
        p = math.exp(rng.uniform(math.log(density[0]), math.log(density[1])))
        fired = on_trigger | (rng.random(tokens.shape) < p)
        scale = rng.uniform(0.5, 8.0)
        acts[..., i] = np.where(fired, rng.exponential(scale, tokens.shape), 0.0)
    acts[tokens == BOS_ID] = 0.0  # BOS excluded
    return acts


# ---------------------------------------------------------------------------------------------
# statistics (brute force, docs/STATISTICS.md)


def build_store(acts: np.ndarray, tokens: np.ndarray, vocab: list[bytes], rng: np.random.Generator,
                *, optional: bool, k: int, n_bins: int, n_intervals: int, m: int, n_logits: int,
                logit_bins: int, n_nb: int, n_top: int,
                bos_acts: np.ndarray | None = None) -> StoreData:
    """bos_acts: activations at the BOS positions (zero elsewhere), which only the quality
    signals see."""
    n_seqs, ctx, d_sae = acts.shape
    included = tokens != BOS_ID
    flat = acts[included]  # (N, d_sae)
    n_tokens = flat.shape[0]
    max_act = flat.max(axis=0).astype(np.float64)
    hist = np.stack([_hist(flat[:, i], max_act[i], n_bins) for i in range(d_sae)])
    seq_max = acts.max(axis=1)  # (n_seqs, d_sae)
    interval_counts = np.stack([_hist(seq_max[:, i], max_act[i], n_intervals)
                                for i in range(d_sae)])
    examples = _examples(acts, tokens, seq_max, max_act, rng, k=k, n_intervals=n_intervals, m=m,
                         with_dloss=optional)
    kept = np.unique(examples.seq)
    logits = rng.normal(0, 1, size=(d_sae, len(vocab)))
    latents = LatentTable(
        n_active=(flat > 0).sum(axis=0).astype(np.int64),
        sum_act=flat.sum(axis=0, dtype=np.float64),
        max_act=max_act,
        hist=hist,
        interval_counts=interval_counts,
        **_logit_fields(logits, n_logits, logit_bins),
        **(_optional_fields(flat, tokens[included], examples, vocab, n_top, n_nb) if optional
           else {}),
        **(_quality_fields(acts, tokens, bos_acts) if optional else {}),
        null_seqs=_null_seqs(acts, kept) if optional else None,
    )
    meta = _meta(d_sae, len(vocab), n_seqs, ctx, n_tokens, flat, optional,
                 dict(k=k, n_bins=n_bins, n_intervals=n_intervals, m=m, n_logits=n_logits,
                      logit_bins=logit_bins, n_seqs=n_seqs, ctx=ctx, seed=0, ablation=optional))
    return StoreData(meta=meta, latents=latents, examples=examples, seq_ids=kept,
                     seq_tokens=tokens[kept], vocab=vocab,
                     token_latents=(_token_latents(flat, tokens[included], len(vocab))
                                    if optional else None))


def _null_seqs(acts: np.ndarray, kept: np.ndarray, per_latent: int = 8) -> np.ndarray:
    """Per latent, the first `per_latent` kept sequences (ascending) on which it is zero at
    every position (the build draws them from a pool of the corpus; here the pool is the kept
    sequences, so that the store keeps no sequence more); -1 pads."""
    zero = acts[kept].max(axis=1) <= 0  # (n_kept, d_sae)
    out = np.full((acts.shape[2], per_latent), -1, dtype=np.int32)
    for i in range(acts.shape[2]):
        ids = kept[zero[:, i]][:per_latent]
        out[i, :len(ids)] = ids
    return out


def _token_latents(flat: np.ndarray, flat_tokens: np.ndarray, vocab_size: int,
                   n: int = 16) -> TokenLatents:
    """Per token some latent fired on, the n latents with the largest total activation on it."""
    d_sae = flat.shape[1]
    sums = np.zeros((vocab_size, d_sae))
    counts = np.zeros((vocab_size, d_sae), dtype=np.int64)
    np.add.at(sums, flat_tokens, flat)
    np.add.at(counts, flat_tokens, flat > 0)
    present = np.flatnonzero((sums > 0).any(1))
    latent = np.full((len(present), n), -1, dtype=np.int32)
    total = np.zeros((len(present), n), dtype=np.float32)
    count = np.zeros((len(present), n), dtype=np.int64)
    for row, t in enumerate(present):
        ranked = [i for i in np.argsort(-sums[t], kind="stable") if sums[t, i] > 0][:n]
        latent[row, :len(ranked)] = ranked
        total[row, :len(ranked)] = sums[t, ranked]
        count[row, :len(ranked)] = counts[t, ranked]
    return TokenLatents(token=present.astype(np.int32), latent=latent, sum_act=total,
                        count=count)


def _hist(values: np.ndarray, hi: float, n: int) -> np.ndarray:
    """Counts of positive values in n equal-width bins of (0, hi]."""
    if hi <= 0:
        return np.zeros(n, dtype=np.int64)
    positive = values[values > 0]
    index = np.clip(np.ceil(positive / hi * n).astype(np.int64) - 1, 0, n - 1)
    return np.bincount(index, minlength=n).astype(np.int64)


def _examples(acts: np.ndarray, tokens: np.ndarray, seq_max: np.ndarray, max_act: np.ndarray,
              rng: np.random.Generator, *, k: int, n_intervals: int, m: int,
              with_dloss: bool) -> Examples:
    rows: list[tuple[int, str, int, int, int]] = []
    for i in range(acts.shape[2]):
        if max_act[i] <= 0:
            continue
        order = np.lexsort((np.arange(len(seq_max)), -seq_max[:, i]))
        rows += [(i, EXAMPLE_TOP, -1, r, int(s)) for r, s in enumerate(order[:k])
                 if seq_max[s, i] > 0]
        for j in range(n_intervals):
            lo, hi = j * max_act[i] / n_intervals, (j + 1) * max_act[i] / n_intervals
            members = np.flatnonzero((seq_max[:, i] > lo) & (seq_max[:, i] <= hi))
            chosen = members[np.argsort(rng.random(len(members)), kind="stable")][:m]
            rows += [(i, EXAMPLE_INTERVAL, j, r, int(s)) for r, s in enumerate(chosen)]
    seq = np.array([r[4] for r in rows], dtype=np.int64)
    latent = np.array([r[0] for r in rows], dtype=np.int64)
    ex_acts = acts[seq, :, latent].astype(np.float32)
    return Examples(
        latent=latent, kind=[r[1] for r in rows],
        interval=np.array([r[2] for r in rows], dtype=np.int64),
        rank=np.array([r[3] for r in rows], dtype=np.int64), seq=seq, acts=ex_acts,
        dloss=_dloss(ex_acts, tokens[seq], rng) if with_dloss else None,
    )


def _dloss(ex_acts: np.ndarray, ex_tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ablation effects that follow activations and decay (a causal model), plus small noise;
    NaN where there is nothing to predict (the last position) or the next token is BOS."""
    n, ctx = ex_acts.shape
    kernel = np.exp(-np.arange(ctx) / 3.0)
    out = np.zeros((n, ctx), dtype=np.float32)
    for e in range(n):
        out[e] = np.convolve(ex_acts[e], kernel)[:ctx] * 0.005 * rng.normal(1.0, 0.7, ctx)
    out += rng.normal(0, 0.0005, out.shape).astype(np.float32)
    out[:, -1] = np.nan  # no next token to predict
    out[:, :-1][ex_tokens[:, 1:] == BOS_ID] = np.nan  # predicting BOS is excluded
    return out


def _logit_fields(logits: np.ndarray, n_logits: int, bins: int) -> dict[str, np.ndarray]:
    order = np.argsort(-logits, axis=1, kind="stable")
    neg = np.argsort(logits, axis=1, kind="stable")
    lo, hi = logits.min(axis=1), logits.max(axis=1)
    hist = np.stack([np.histogram(row, bins=bins, range=(a, b))[0]
                     for row, a, b in zip(logits, lo, hi, strict=True)])
    return dict(
        logit_pos_ids=order[:, :n_logits], logit_pos_vals=np.take_along_axis(
            logits, order[:, :n_logits], axis=1),
        logit_neg_ids=neg[:, :n_logits], logit_neg_vals=np.take_along_axis(
            logits, neg[:, :n_logits], axis=1),
        logit_hist=hist.astype(np.int64), logit_lo=lo, logit_hi=hi,
    )


def _optional_fields(flat: np.ndarray, flat_tokens: np.ndarray, examples: Examples,
                     vocab: list[bytes], n_top: int, n_nb: int) -> dict[str, np.ndarray]:
    d_sae = flat.shape[1]
    sums = np.zeros((d_sae, len(vocab)))
    counts = np.zeros((d_sae, len(vocab)), dtype=np.int64)
    for i in range(d_sae):
        np.add.at(sums[i], flat_tokens, flat[:, i])
        np.add.at(counts[i], flat_tokens, flat[:, i] > 0)
    top = np.argsort(-sums, axis=1, kind="stable")[:, :n_top]
    top_sums = np.take_along_axis(sums, top, axis=1)
    top = np.where(top_sums > 0, top, -1)
    active = flat > 0
    inter = active.T.astype(np.int64) @ active.astype(np.int64)
    union = active.sum(0)[:, None] + active.sum(0)[None, :] - inter
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    np.fill_diagonal(jaccard, -1)
    coact = np.argsort(-jaccard, axis=1, kind="stable")[:, :n_nb]
    coact_vals = np.take_along_axis(jaccard, coact, axis=1)
    cos = np.clip(np.random.default_rng(5).normal(0.1, 0.2, (d_sae, d_sae)), -1, 1)
    np.fill_diagonal(cos, -2)
    cos_ids = np.argsort(-cos, axis=1, kind="stable")[:, :n_nb]
    abl_mean, abl_frac = _ablation_summary(examples, d_sae)
    # the latent map: a fixed layout (as the build stores it: float32, 4 decimals)
    xy = np.round(np.random.default_rng(9).normal(0, 3, (d_sae, 2)), 4).astype(np.float32)
    return dict(
        top_token_ids=top, top_token_sums=top_sums,
        top_token_counts=np.take_along_axis(counts, np.maximum(top, 0), axis=1),
        nb_cos_ids=cos_ids, nb_cos_vals=np.take_along_axis(cos, cos_ids, axis=1),
        nb_coact_ids=np.where(coact_vals > 0, coact, -1), nb_coact_vals=np.maximum(coact_vals, 0),
        abl_mean=abl_mean, abl_frac_helped=abl_frac,
        map_x=xy[:, 0], map_y=xy[:, 1],
    )


def _quality_fields(acts: np.ndarray, tokens: np.ndarray,
                    bos_acts: np.ndarray | None) -> dict[str, np.ndarray]:
    d_sae = acts.shape[2]
    first = acts[_first_positions(tokens)].sum(axis=0, dtype=np.float64)
    bos = (np.zeros(d_sae) if bos_acts is None
           else bos_acts[tokens == BOS_ID].sum(axis=0, dtype=np.float64))
    cos = np.round(np.random.default_rng(11).uniform(0.2, 0.99, d_sae), 4).astype(np.float32)
    return dict(bos_sum=bos, first_sum=first, enc_dec_cos=cos)


def _ablation_summary(examples: Examples, d_sae: int) -> tuple[np.ndarray, np.ndarray]:
    mean = np.full(d_sae, np.nan)
    frac = np.full(d_sae, np.nan)
    assert examples.dloss is not None
    for i in range(d_sae):
        rows = examples.latent == i
        d = examples.dloss[rows][examples.acts[rows] > 0]
        d = d[~np.isnan(d)]
        if len(d):
            mean[i], frac[i] = d.mean(), (d > 0).mean()
    return mean, frac


def _meta(d_sae: int, d_vocab: int, n_seqs: int, ctx: int, n_tokens: int, flat: np.ndarray,
          optional: bool, settings: dict) -> StoreMeta:
    return StoreMeta(
        model="fake-model <b>", sae="fake/sae-\"x\"", sae_architecture="standard",
        hook="blocks.0.hook_resid_post", d_model=16, d_sae=d_sae, d_vocab=d_vocab,
        corpus="hand-made corpus with </script> inside", n_seqs=n_seqs, ctx=ctx,
        n_tokens=n_tokens, settings=settings,
        versions={"feature-browser": "0.1.0", "torch": "none"}, logit_direction="W_dec",
        ln_folded=True, created="2025-01-02", l0=float((flat > 0).sum(1).mean()),
        bos_id=BOS_ID, has_ablation=optional, coact_method="exact" if optional else "",
        **(dict(eval_n_seqs=n_seqs, eval_n_positions=n_tokens,
                eval_n_predictions=n_tokens - n_seqs, explained_variance=0.8765,
                ce_loss_clean=2.5, ce_loss_spliced=2.75, ce_loss_zero=7.5, loss_recovered=0.95)
           if optional else {}),
    )
