"""generator.compute.nulls: the null pool against its reference (the interval samples' hash), the
selection on a hand-made mask, and the null sequences of a real pass 1 on the tiny model against
a dense brute force, for every SAE architecture and hook kind, any batching, with and without
positions excluded for their norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.compute.activations import HookedSAE
from generator.compute.engine import Engine, EngineSettings
from generator.compute.nulls import NULL_POOL, NullScan, first_nulls, null_pool
from generator.inputs.sites import parse_hook
from tests.helpers import BOS, CASES, cached, tiny_model, tiny_sae, tiny_tokens
from tests.reference import reference_norm_mask, reference_null_pool, reference_null_seqs

SEED = 7


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def tokens():
    """More sequences than the pool (so it is a choice), short ones (so latents miss some)."""
    return tiny_tokens(n_seqs=80, ctx=8)


def scan_pool(model, sae, hook: str, tokens: np.ndarray, norm: float = 0.0,
              **settings) -> np.ndarray:
    """The null sequences after a real pass 1, the pool's entries from Engine.entries_of."""
    engine = Engine(HookedSAE(model, sae, parse_hook(hook), max_norm_multiple=norm), tokens, BOS,
                    EngineSettings(quiet=True, **{"batch_size": 16, **settings}))
    engine.pass1(np.arange(len(tokens)))
    pool = null_pool(len(tokens), SEED)
    scan = NullScan(pool, engine.hooked.d_sae)
    scan.see_all(engine.entries_of(np.sort(pool)))
    return scan.null_seqs()


def dense(model, sae, hook: str, tokens: np.ndarray) -> np.ndarray:
    """Every activation [S, T, d_sae]: the SAE's encode of a plain run_with_cache."""
    with torch.no_grad():
        return sae.encode(cached(model, torch.from_numpy(tokens).long(), hook)[hook]).float().numpy()


def test_the_pool_is_the_smallest_keys_in_their_order():
    for n_seqs in (1, 10, 64, 300):
        pool = null_pool(n_seqs, SEED)
        assert pool.dtype == np.int32
        assert pool.tolist() == reference_null_pool(n_seqs, SEED, NULL_POOL)
    assert null_pool(300, SEED).tolist() != null_pool(300, SEED + 1).tolist()
    assert np.array_equal(null_pool(300, SEED), null_pool(300, SEED))


def test_selection_on_a_hand_made_mask():
    """Pool order, not sequence order; -1 pads a latent active on too many pool sequences."""
    pool = np.array([7, 2, 9, 4, 0], dtype=np.int32)
    active = np.zeros((5, 4), dtype=bool)
    active[:, 1] = True             # latent 1: active on every pool sequence
    active[[0, 2, 3], 2] = True     # latent 2: zero on the pool's rows 1 and 4 only
    active[1, 3] = True             # latent 3: zero on all but row 1
    got = first_nulls(active, pool, k=3)
    assert got.dtype == np.int32
    assert got.tolist() == [[7, 2, 9], [-1, -1, -1], [2, 0, -1], [7, 9, 4]]
    assert first_nulls(np.zeros((0, 2), bool), pool[:0], k=2).tolist() == [[-1, -1], [-1, -1]]


def test_a_pool_sequence_never_seen_is_refused():
    scan = NullScan(np.array([3, 1]), d_sae=2)
    with pytest.raises(RuntimeError, match=r"\[3, 1\] were never seen"):
        scan.null_seqs()


@pytest.mark.parametrize("kind, hook", CASES)
def test_null_seqs_equal_brute_force(model, tokens, kind, hook):
    """Every id is a pool sequence on which the dense activation is 0 at every included
    position, and they are the first 8 such in the pool's order; the cases hold latents with 8,
    with fewer (-1 pads) and with none."""
    sae = tiny_sae(kind, hook)
    got = scan_pool(model, sae, hook, tokens)
    mask = tokens != BOS
    want = reference_null_seqs(dense(model, sae, hook, tokens), mask,
                               reference_null_pool(len(tokens), SEED))
    assert got.shape == (sae.cfg.d_sae, 8) and got.dtype == np.int32
    assert got.tolist() == want
    filled = (got != -1).sum(1)
    assert (filled == 8).any() and (filled < 8).any()


def test_positions_excluded_for_their_norm_do_not_count(model, tokens):
    """With --max-norm-multiple, a latent active only at excluded positions of a sequence is
    zero on it; such a sequence is chosen here."""
    hook = "blocks.1.hook_resid_pre"
    sae = tiny_sae("standard", hook)
    with torch.no_grad():
        x = cached(model, torch.from_numpy(tokens).long(), hook)[hook].numpy()
    mask = reference_norm_mask(x, tokens, BOS, 1.15)
    acts = dense(model, sae, hook, tokens)
    got = scan_pool(model, sae, hook, tokens, norm=1.15)
    assert got.tolist() == reference_null_seqs(acts, mask, reference_null_pool(len(tokens), SEED))
    latents, seqs = np.nonzero(got != -1)[0], got[got != -1]
    excluded = ~mask & (tokens != BOS)
    assert any((acts[seq, :, latent][excluded[seq]] > 0).any()
               for latent, seq in zip(latents.tolist(), seqs.tolist(), strict=True))


def test_null_seqs_do_not_depend_on_batching(model, tokens):
    """Pass 1's cache (batches of 16) or every batch re-run (batches of 5, 3 positions encoded
    at a time), the same build twice: the same null sequences."""
    hook = "blocks.0.hook_attn_out"
    sae = tiny_sae("topk", hook)
    a = scan_pool(model, sae, hook, tokens)
    assert np.array_equal(a, scan_pool(model, sae, hook, tokens))
    assert np.array_equal(a, scan_pool(model, sae, hook, tokens, batch_size=5, encode_rows=3,
                                       cache_bytes=0))
