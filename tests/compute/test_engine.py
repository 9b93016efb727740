"""The engine on real TransformerLens + sae_lens objects, for every SAE kind and hook kind:
statistics, example activations and ablation Δloss against dense brute-force recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.compute.activations import HookedSAE
from generator.compute.engine import Engine, EngineSettings
from generator.compute.summaries import coact_neighbours, token_latents, top_tokens
from generator.inputs.sites import check_compatible, parse_hook
from tests.helpers import BOS, HOOKS, SAE_CASES, cached, tiny_model, tiny_sae, tiny_tokens
from tests.reference import (
    assert_latent_matches,
    reference_jaccard,
    reference_latent,
    reference_position_totals,
    reference_token_latents,
    reference_top_tokens,
)

K, N_BINS, N_INT, M, SEED = 3, 6, 3, 2, 5


def dense_acts(model, sae, hook: str, tokens: np.ndarray, bos: bool = False) -> np.ndarray:
    """Every activation, from a plain full forward pass with run_with_cache (zero at BOS
    positions unless `bos`)."""
    with torch.no_grad():
        cache = cached(model, torch.from_numpy(tokens).long(), hook)
        acts = sae.encode(cache[hook]).float().numpy()
    return acts if bos else acts * (tokens != BOS)[..., None]


def brute_force_dloss(model, sae, hook: str, tokens: np.ndarray, acts: np.ndarray, s: int,
                      i: int) -> np.ndarray:
    """The ablation as docs/STATISTICS.md defines it, literally: the whole model re-run with
    h - a[s,t,i] W_dec[i]."""
    toks = torch.from_numpy(tokens[s:s + 1]).long()
    delta = torch.from_numpy(acts[s, :, i])[:, None] * sae.W_dec[i].detach()[None, :]

    def ablate(value, hook):
        return value - delta.reshape(value.shape[1:]).to(value.dtype)

    with torch.no_grad():
        clean = model(toks, return_type="loss", loss_per_token=True)[0]
        ablated = model.run_with_hooks(toks, return_type="loss", loss_per_token=True,
                                       fwd_hooks=[(hook, ablate)])[0]
    return (ablated - clean).numpy()


def check_top_tokens_and_coact(p1, dense: np.ndarray, tokens: np.ndarray) -> None:
    mask = tokens != BOS
    ids, sums, counts = top_tokens(p1, 4)
    nb_ids, nb_vals = coact_neighbours(p1, 3)
    for i in range(dense.shape[2]):
        ref = reference_top_tokens(dense, mask, tokens, i, 4)
        assert [int(t) for t in ids[i] if t != -1] == [r[0] for r in ref]
        assert counts[i][: len(ref)].tolist() == [r[2] for r in ref]
        np.testing.assert_allclose(sums[i][: len(ref)], [r[1] for r in ref], rtol=1e-5)
        jac = {j: reference_jaccard(dense, mask, i, j) for j in range(dense.shape[2]) if j != i}
        ranked = sorted((j for j in jac if jac[j] > 0), key=lambda j: (-jac[j], j))[:3]
        assert [int(j) for j in nb_ids[i] if j != -1] == ranked
        np.testing.assert_allclose(nb_vals[i][: len(ranked)], [jac[j] for j in ranked], rtol=1e-6)
    # the search's token index: per token that some latent fired on, the latents firing most
    by_token = token_latents(p1, 3)
    assert by_token is not None
    present, lat, lsums, lcounts = by_token
    refs = {int(t): reference_token_latents(dense, mask, tokens, int(t), 3)
            for t in np.unique(tokens[mask])}
    assert present.tolist() == sorted(t for t, ref in refs.items() if ref)
    for row, t in enumerate(present.tolist()):
        ref = refs[t]
        assert [int(i) for i in lat[row] if i != -1] == [r[0] for r in ref]
        assert lcounts[row][: len(ref)].tolist() == [r[2] for r in ref]
        np.testing.assert_allclose(lsums[row][: len(ref)], [r[1] for r in ref], rtol=1e-5)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize(("kind", "hook"), SAE_CASES)
def test_engine_exact_for_every_sae_and_hook(model, kind, hook):
    sae = tiny_sae(kind, hook)
    site = parse_hook(hook)
    check_compatible(model, sae, site)
    tokens = tiny_tokens()
    dense = dense_acts(model, sae, hook, tokens)
    assert (dense > 0).any(), "test SAE must have active latents"
    everywhere = dense_acts(model, sae, hook, tokens, bos=True)
    totals = [reference_position_totals(everywhere, tokens != BOS, i) for i in range(dense.shape[2])]
    assert sum(t[0] for t in totals) > 0 and sum(t[1] for t in totals) > 0
    # pass 2 from pass 1's cached triplets, and (cache_bytes 0) by re-running the model
    engines = []
    # encode_rows: the SAE encodes a few positions at a time (as for a 131k-latent SAE) or all
    for batch, cache_bytes, rows in ((1, 0, 5), (10, 0, 0), (3, 1 << 30, 7)):
        engine = Engine(HookedSAE(model, sae, site), tokens, BOS,
                        EngineSettings(k=K, n_bins=N_BINS, n_intervals=N_INT, m=M, seed=SEED,
                                       batch_size=batch, quiet=True, cache_bytes=cache_bytes,
                                       encode_rows=rows))
        seqs = np.arange(len(tokens))
        p1 = engine.pass1(seqs)
        p2 = engine.pass2(p1.max_act)
        for i in range(sae.cfg.d_sae):
            ref = reference_latent(dense, tokens != BOS, i, K, N_BINS, N_INT, M, SEED)
            assert_latent_matches(p1, p2, i, ref)
            assert p2.interval_counts[i].tolist() == ref.interval_counts
            assert float(p1.bos_act[i]) == pytest.approx(totals[i][0], rel=1e-5, abs=1e-6)
            assert float(p1.first_act[i]) == pytest.approx(totals[i][1], rel=1e-5, abs=1e-6)
        check_top_tokens_and_coact(p1, dense, tokens)
        engines.append((engine, p1, p2))
    shown = engine.examples(p1, p2)  # per-token activations from pass 1's cache
    ex = shown.examples
    recomputed = engines[0][0].examples(*engines[0][1:]).examples  # from the model again
    np.testing.assert_array_equal(recomputed.latent, ex.latent)
    same = recomputed.seq == ex.seq
    # where an exact tie (one token's embedding in several sequences) was split an ulp apart by
    # the other encode shape (assert_latent_matches), the sequences differ but tie at their rank
    np.testing.assert_allclose(np.asarray(recomputed.acts)[~same].max(axis=1),
                               np.asarray(ex.acts)[~same].max(axis=1), rtol=1e-6)
    assert same.mean() > 0.8
    np.testing.assert_allclose(np.asarray(recomputed.acts)[same], np.asarray(ex.acts)[same],
                               rtol=1e-5, atol=1e-6)  # as vs dense
    # Δloss is a difference of float32 losses of a few nats: 1e-5 absolute is their resolution
    np.testing.assert_allclose(np.asarray(recomputed.dloss)[same], np.asarray(ex.dloss)[same],
                               rtol=1e-4, atol=1e-5)
    assert len(ex.seq) > 0
    for row in range(len(ex.seq)):
        s, i = int(ex.seq[row]), int(ex.latent[row])
        np.testing.assert_allclose(ex.acts[row], dense[s, :, i], rtol=1e-5, atol=1e-6)
    checked = sorted({(int(ex.latent[r]), int(ex.seq[r])) for r in range(len(ex.seq))})
    sums: dict[int, list[float]] = {}
    for i, s in checked:
        want = brute_force_dloss(model, sae, hook, tokens, dense, s, i)
        row = next(r for r in range(len(ex.seq)) if ex.seq[r] == s and ex.latent[r] == i)
        got = ex.dloss[row, :-1]
        ok = tokens[s, 1:] != BOS
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-4, atol=1e-5)
        assert np.isnan(got[~ok]).all() and np.isnan(ex.dloss[row, -1])
        active = (dense[s, :-1, i] > 0) & ok
        sums.setdefault(i, []).extend(want[active].tolist())
    # ablation summary: over each latent's distinct shown pairs, the active positions' Δloss
    for i in range(sae.cfg.d_sae):
        values = sums.get(i, [])
        if values:
            assert shown.abl_mean[i] == pytest.approx(np.mean(values), rel=1e-3, abs=1e-5)
            assert shown.abl_frac_helped[i] == pytest.approx(np.mean(np.array(values) > 0))
        else:
            assert np.isnan(shown.abl_mean[i])


@pytest.mark.parametrize("hook", list(HOOKS))
def test_unablated_run_reproduces_clean_model(model, hook):
    site = parse_hook(hook)
    hooked = HookedSAE(model, tiny_sae("standard", hook), site)
    tokens = torch.from_numpy(tiny_tokens()).long()
    resid, _ = hooked.run_to_hook(tokens)
    from_hook = hooked.losses(resid, tokens)
    zero = hooked.losses(resid, tokens, torch.zeros(*tokens.shape, HOOKS[hook]))
    with torch.no_grad():
        clean = model(tokens, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(from_hook, clean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zero, clean, rtol=1e-5, atol=1e-5)


def test_coactivation_valve_through_the_engine(model):
    """A pair budget too small for all co-active pairs: pass 1 keeps candidates, pass 2 recounts
    them, and every listed neighbour's Jaccard is exact."""
    hook = "blocks.1.hook_resid_pre"
    sae = tiny_sae("standard", hook)
    tokens = tiny_tokens(n_seqs=24)
    dense = dense_acts(model, sae, hook, tokens)
    engine = Engine(HookedSAE(model, sae, parse_hook(hook)), tokens, BOS,
                    EngineSettings(k=K, batch_size=4, quiet=True, coact_bytes=0, coact_keep=1))
    seqs = np.arange(len(tokens))
    p1 = engine.pass1(seqs)
    assert p1.coact_pruned, "the test corpus must overflow the pair budget"
    p2 = engine.pass2(p1.max_act, p1.coact.fold().keys)
    nb_ids, nb_vals = coact_neighbours(p1, 3, p2)
    mask = tokens != BOS
    listed = 0
    for i in range(sae.cfg.d_sae):
        for j, v in zip(nb_ids[i], nb_vals[i], strict=True):
            if j != -1:
                assert v == pytest.approx(reference_jaccard(dense, mask, i, int(j)), rel=1e-6)
                listed += 1
    assert listed > 0


def test_out_of_memory_halves_the_batch_and_counts_once(model, monkeypatch, caplog):
    """A (simulated) GPU out-of-memory error in the SAE encode of a large batch: the engine halves
    the batch, says so, and the statistics equal an uninterrupted run's."""
    hook = "blocks.1.hook_resid_pre"
    sae = tiny_sae("topk", hook)
    tokens = tiny_tokens(n_seqs=16)
    settings = EngineSettings(k=K, batch_size=16, quiet=True)
    seqs = np.arange(len(tokens))
    clean = Engine(HookedSAE(model, sae, parse_hook(hook)), tokens, BOS, settings).pass1(seqs)
    real_encode = HookedSAE.encode

    def encode(self, hook_acts):
        if hook_acts.shape[0] > 8 * tokens.shape[1]:  # more than 8 sequences' positions
            raise torch.OutOfMemoryError("simulated")
        return real_encode(self, hook_acts)

    monkeypatch.setattr(HookedSAE, "encode", encode)
    engine = Engine(HookedSAE(model, sae, parse_hook(hook)), tokens, BOS, settings)
    with caplog.at_level("WARNING"):
        p1 = engine.pass1(seqs)
    assert engine.batch_size == 8 and "batch size halved to 8" in caplog.text
    assert p1.n_tokens == clean.n_tokens
    torch.testing.assert_close(p1.n_active, clean.n_active)
    torch.testing.assert_close(p1.top_seqs, clean.top_seqs)
    assert top_tokens(p1, 4)[0].tolist() == top_tokens(clean, 4)[0].tolist()
    assert coact_neighbours(p1, 3)[0].tolist() == coact_neighbours(clean, 3)[0].tolist()


@pytest.mark.parametrize("hook", ["blocks.1.hook_resid_pre", "blocks.1.attn.hook_z"])
def test_positions_over_the_norm_multiple_count_nowhere(model, hook):
    """--max-norm-multiple: positions whose activation norm exceeds the multiple of their
    sequence's median are excluded like BOS, from the statistics, the examples and the ablation;
    the BOS totals stay BOS's. A low multiple (1.15) excludes a good share on the tiny model."""
    from tests.reference import reference_norm_mask

    sae = tiny_sae("topk", hook)
    site = parse_hook(hook)
    tokens = tiny_tokens()
    with torch.no_grad():
        x = cached(model, torch.from_numpy(tokens).long(), hook)[hook].numpy()
    mask = reference_norm_mask(x, tokens, BOS, 1.15)
    n_out = int(((tokens != BOS) & ~mask).sum())
    assert 0 < n_out < (tokens != BOS).sum() / 2, n_out
    dense = dense_acts(model, sae, hook, tokens) * mask[..., None]
    everywhere = dense_acts(model, sae, hook, tokens, bos=True)
    for batch in (1, 10):
        engine = Engine(HookedSAE(model, sae, site, max_norm_multiple=1.15), tokens, BOS,
                        EngineSettings(k=K, n_bins=N_BINS, n_intervals=N_INT, m=M, seed=SEED,
                                       batch_size=batch, quiet=True, cache_bytes=0))
        p1 = engine.pass1(np.arange(len(tokens)))
        p2 = engine.pass2(p1.max_act)
        assert p1.n_tokens == int(mask.sum())
        for i in range(sae.cfg.d_sae):
            assert_latent_matches(p1, p2, i, reference_latent(dense, mask, i, K, N_BINS, N_INT,
                                                              M, SEED))
            bos_total = reference_position_totals(everywhere, tokens != BOS, i)[0]
            assert float(p1.bos_act[i]) == pytest.approx(bos_total, rel=1e-5, abs=1e-6)
    ex = engine.examples(p1, p2).examples
    assert len(ex.seq) > 0
    for row in range(len(ex.seq)):
        s, i = int(ex.seq[row]), int(ex.latent[row])
        np.testing.assert_allclose(ex.acts[row], dense[s, :, i], rtol=1e-5, atol=1e-6)
        assert np.isnan(ex.dloss[row, :-1][~mask[s, 1:]]).all()  # excluded targets: no Δloss
        assert not np.isnan(ex.dloss[row, :-1][mask[s, 1:]]).any()
