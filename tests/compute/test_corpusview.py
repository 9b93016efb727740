"""generator.compute.corpusview: the corpus view's numbers against a brute force on the tiny real
model and against the engine's examples on the same sequences, for any batching; the store
round trip and the refusal of a view that lists other sequences."""

from __future__ import annotations

import numpy as np
import pytest

from generator.store.schema import CORPUS_LIST, CORPUS_TOP
from tests.helpers import CASES, cached
from tests.reference import reference_corpus_view


@pytest.fixture(scope="module")
def model():
    from tests.helpers import tiny_model

    return tiny_model()


def brute_force(model, sae, hook: str, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense activations [n, ctx, d_sae] (the SAE's encode of the cached hook activation, zero
    at BOS) and the clean loss [n, ctx] (NaN at the last position and before a BOS), from one
    plain forward pass of the whole model per sequence."""
    import torch

    from tests.helpers import BOS

    acts, losses = [], []
    with torch.no_grad():
        for row in tokens:
            t = torch.from_numpy(row[None]).long()
            cache = cached(model, t, hook)
            a = sae.encode(cache[hook])[0].float()  # the sequence as a whole
            a[torch.from_numpy(row == BOS)] = 0
            acts.append(a.numpy())
            loss = model(t, return_type="loss", loss_per_token=True)[0].numpy()
            loss = np.where(row[1:] != BOS, loss, np.nan)
            losses.append(np.append(loss, np.nan))
    return np.stack(acts), np.stack(losses)


def compute(model, kind: str, hook: str, tokens: np.ndarray, batch_size: int = 4,
            encode_rows: int = 1024, kept: np.ndarray | None = None, cache_bytes: int = 2 << 30):
    """The corpus view of `kept` (default: every sequence) after a real pass 1 over `tokens`:
    its entries from pass 1's cache, or with cache_bytes=0 from its batches re-run."""
    from generator.compute.activations import HookedSAE
    from generator.compute.corpusview import compute_corpus_view
    from generator.compute.engine import Engine, EngineSettings
    from generator.inputs.sites import parse_hook
    from tests.helpers import BOS, tiny_sae

    sae = tiny_sae(kind, hook)
    hooked = HookedSAE(model, sae, parse_hook(hook))
    engine = Engine(hooked, tokens, BOS, EngineSettings(
        batch_size=batch_size, encode_rows=encode_rows, cache_bytes=cache_bytes, quiet=True,
        clean_loss=True))
    engine.pass1(np.arange(len(tokens)))
    kept = np.arange(len(tokens)) if kept is None else kept
    return sae, hooked, compute_corpus_view(kept, tokens.shape[1], engine.entries_of(kept))


def assert_views_equal(got, want, exact_floats: bool = False) -> None:
    for name in ("n_latents", "row", "pos", "latent", "s_row", "s_latent", "s_n_active"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist(), name
    for name in ("act", "s_max_act", "s_sum_act", "loss"):
        if exact_floats:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        else:
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-4,
                                       atol=1e-5)


@pytest.mark.parametrize("kind, hook", CASES)
def test_corpus_view_equals_brute_force(model, kind, hook, monkeypatch):
    """Small list sizes (3 per order, 2 per token), so that the 24-latent tiny SAE has more
    active latents than the table and than a token's list."""
    from generator.compute import corpusview
    from tests.helpers import tiny_tokens

    monkeypatch.setattr(corpusview, "CORPUS_LIST", 3)
    monkeypatch.setattr(corpusview, "CORPUS_TOP", 2)
    tokens = tiny_tokens()
    sae, _, got = compute(model, kind, hook, tokens)
    acts, loss = brute_force(model, sae, hook, tokens)
    want = reference_corpus_view(acts, loss, top=2, k=3)
    assert_views_equal(got, want)
    assert (got.n_latents > 3).any() and len(got.row) > len(tokens) * 2  # selection happened
    assert len(got.row) < int((acts > 0).sum())


def test_corpus_view_does_not_depend_on_batching(model):
    """Pass 1's cache (batches of 4) or its batches re-run (no cache, batches of 3, 5 positions
    encoded at a time), and the tables made in chunks of a few sequences: the same view."""
    from generator.compute import corpusview
    from tests.helpers import tiny_tokens

    tokens = tiny_tokens()
    _, _, a = compute(model, "standard", "blocks.1.hook_resid_pre", tokens)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpusview, "CHUNK_ENTRIES", 50)
        _, _, b = compute(model, "standard", "blocks.1.hook_resid_pre", tokens, batch_size=3,
                          encode_rows=5, cache_bytes=0)
    assert_views_equal(a, b)


def test_corpus_view_of_some_sequences(model):
    """Kept sequences that are not every sequence (the store keeps those examples point to): the
    view has their rows only, each equal to the brute force of that sequence."""
    from tests.helpers import tiny_tokens

    tokens = tiny_tokens()
    kept = np.arange(1, len(tokens), 2)
    sae, _, got = compute(model, "standard", "blocks.1.hook_resid_pre", tokens, batch_size=3,
                          kept=kept)
    acts, loss = brute_force(model, sae, "blocks.1.hook_resid_pre", tokens[kept])
    assert_views_equal(got, reference_corpus_view(acts, loss, top=CORPUS_TOP, k=CORPUS_LIST))
    assert len(got.n_latents) == len(kept) and got.row.max() == len(kept) - 1


@pytest.mark.parametrize("kind, hook", CASES[:2])
def test_corpus_view_equals_the_engines_examples(model, kind, hook):
    """On the kept sequences of a real engine run: every table latent's activations are its
    example's at every position, and every kept entry of an example latent is its example's."""
    from generator.compute.activations import HookedSAE
    from generator.compute.corpusview import compute_corpus_view
    from generator.compute.engine import Engine, EngineSettings
    from generator.inputs.sites import parse_hook
    from tests.helpers import BOS, tiny_sae, tiny_tokens

    tokens = tiny_tokens()
    hooked = HookedSAE(model, tiny_sae(kind, hook), parse_hook(hook))
    engine = Engine(hooked, tokens, BOS, EngineSettings(k=3, m=2, batch_size=4, quiet=True,
                                                        clean_loss=True))
    p1 = engine.pass1(np.arange(len(tokens)))
    ex = engine.examples(p1, engine.pass2(p1.max_act)).examples
    kept = np.unique(ex.seq)
    view = compute_corpus_view(kept, tokens.shape[1], engine.entries_of(kept))
    checked = 0
    for j in range(len(ex.seq)):
        r, i = int(np.searchsorted(kept, ex.seq[j])), int(ex.latent[j])
        e = (view.row == r) & (view.latent == i)
        np.testing.assert_array_equal(view.act[e], ex.acts[j][view.pos[e]])  # the same bits
        if i in view.s_latent[view.s_row == r]:
            acts = np.zeros(tokens.shape[1], np.float32)
            acts[view.pos[e]] = view.act[e]
            np.testing.assert_array_equal(acts, ex.acts[j])
            checked += 1
    assert checked > 10
