"""Quality signals on the tiny model against brute force (docs/STATISTICS.md, "Quality signals"):
every per-latent flag and share from the engine's statistics equals its definition applied to a
dense activation array of every position (BOS included), the encoder-decoder cosine equals a
plain numpy cosine, and the SAE-level figures equal a plain whole-model forward pass with the
reconstruction spliced in (or the hook zeroed) at the non-BOS positions."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from generator.compute.activations import HookedSAE
from generator.compute.engine import Engine, EngineSettings
from generator.compute.quality import encoder_decoder_cosine, sae_figures
from generator.compute.statistics import first_positions
from generator.compute.summaries import top_tokens
from generator.inputs.sites import parse_hook
from generator.site.quality import AT_BOS, AT_FIRST, DEAD, DENSE, SINGLE, latent_quality
from tests.helpers import BOS, HOOKS, SAE_CASES, SAE_KINDS, cached, tiny_model, tiny_sae, tiny_tokens
from tests.reference import fixed_sum

HOOK = "blocks.1.hook_resid_pre"
TOKEN = 3
"""the token latent 4 is made to fire on."""


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def hook_acts(model, hook: str, tokens: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        cache = cached(model, torch.from_numpy(tokens).long(), hook)
    return cache[hook]


def aimed_sae(model, tokens: np.ndarray):
    """A standard SAE whose first latents are aimed at each flag: 0 never fires (dead), 1 fires
    everywhere (dense), 2 at BOS positions, 3 at first positions, 4 on TOKEN; the others keep
    their random weights. Each aimed latent reads the direction that separates its positions
    from the rest (difference of means), with the threshold that gives its positions the largest
    share of its activation."""
    sae = tiny_sae("standard", HOOK, d_sae=12, seed=3)
    h = hook_acts(model, HOOK, tokens).reshape(-1, HOOKS[HOOK]).double()
    flat = tokens.reshape(-1)
    bos = torch.from_numpy(flat == BOS)
    first = first_positions(torch.from_numpy(tokens != BOS)).reshape(-1)
    targets = {2: bos, 3: first, 4: torch.from_numpy(flat == TOKEN)}
    with torch.no_grad():
        sae.b_dec.zero_()
        sae.W_enc[:, 0] = 0.0
        sae.b_enc[0] = -1.0
        sae.W_enc[:, 1] = 0.0
        sae.b_enc[1] = 0.5
        for i, on in targets.items():
            w = h[on].mean(0) - h[~on].mean(0)
            w = w / w.norm()
            proj = h @ w
            share = [float((proj[on] - t).clamp_min(0).sum() / (proj - t).clamp_min(0).sum())
                     for t in proj[on].tolist() if (proj[on] > t).any()]
            best = [t for t in proj[on].tolist() if (proj[on] > t).any()][int(np.argmax(share))]
            sae.W_enc[:, i] = w.float()
            sae.b_enc[i] = -best
    return sae


def reference_signals(acts: np.ndarray, tokens: np.ndarray, i: int) -> dict:
    """The definitions, literally, from activations at every position (BOS included)."""
    mask = tokens != BOS
    S, T, _ = acts.shape
    included = [(s, t) for s in range(S) for t in range(T) if mask[s, t]]
    values = [float(acts[s, t, i]) for s, t in included if acts[s, t, i] > 0]
    n_active, total = len(values), fixed_sum(values)
    at_bos = fixed_sum([float(acts[s, t, i]) for s in range(S) for t in range(T)
                        if not mask[s, t] and acts[s, t, i] > 0])
    at_first = fixed_sum([float(acts[s, t, i]) for s, t in included
                          if t > 0 and not mask[s, t - 1] and acts[s, t, i] > 0])
    per_token: dict[int, list[float]] = {}
    for s, t in included:
        if acts[s, t, i] > 0:
            per_token.setdefault(int(tokens[s, t]), []).append(float(acts[s, t, i]))
    top = max((fixed_sum(v) for v in per_token.values()), default=0.0)
    density = n_active / len(included)
    everything = at_bos + total
    bos_share = at_bos / everything if everything > 0 else math.nan
    first_share = at_first / everything if everything > 0 else math.nan
    top_share = top / total if total > 0 else math.nan
    flags = ((DEAD if n_active == 0 else 0) | (DENSE if density > 0.1 else 0)
             | (AT_BOS if bos_share > 0.5 else 0) | (AT_FIRST if first_share > 0.5 else 0)
             | (SINGLE if top_share >= 0.9 else 0))
    return dict(density=density, bos_share=bos_share, first_share=first_share,
                top_share=top_share, flags=flags)


@pytest.mark.parametrize("batch,rows", [(1, 5), (4, 0), (16, 7)])
def test_flags_and_shares_match_brute_force(model, batch, rows):
    tokens = tiny_tokens(n_seqs=16)
    sae = aimed_sae(model, tokens)
    with torch.no_grad():
        acts = sae.encode(hook_acts(model, HOOK, tokens)).float().numpy()
    engine = Engine(HookedSAE(model, sae, parse_hook(HOOK)), tokens, BOS,
                    EngineSettings(k=3, batch_size=batch, quiet=True, encode_rows=rows))
    p1 = engine.pass1(np.arange(len(tokens)))
    ids, sums, _ = top_tokens(p1, 3)
    lat = SimpleNamespace(n_active=p1.n_active.numpy(), sum_act=p1.sum_act.numpy(),
                          bos_sum=p1.bos_act.numpy(), first_sum=p1.first_act.numpy(),
                          top_token_ids=ids, top_token_sums=sums,
                          enc_dec_cos=encoder_decoder_cosine(sae, block=5))
    q = latent_quality(lat, p1.n_tokens)
    for i in range(sae.cfg.d_sae):
        ref = reference_signals(acts, tokens, i)
        assert q.density[i] == ref["density"]
        for mine, key in ((q.bos_share, "bos_share"), (q.first_share, "first_share"),
                          (q.top_token_share, "top_share")):
            assert mine is not None
            if math.isnan(ref[key]):
                assert math.isnan(mine[i])
            else:
                assert mine[i] == pytest.approx(ref[key], rel=1e-6, abs=1e-9)
        assert int(q.flags[i]) == ref["flags"], (i, ref)
    # every flag is exercised, by the latent aimed at it
    assert [int(q.flags[i]) & bit for i, bit in enumerate((DEAD, DENSE, AT_BOS, AT_FIRST,
                                                            SINGLE))] == \
        [DEAD, DENSE, AT_BOS, AT_FIRST, SINGLE]
    assert q.names(0) == ["dead"] and "BOS" in q.names(2)


@pytest.mark.parametrize("kind", SAE_KINDS)
def test_encoder_decoder_cosine(kind):
    sae = tiny_sae(kind, HOOK, d_sae=10)
    with torch.no_grad():
        sae.W_enc.add_(torch.randn_like(sae.W_enc) * 0.3)
        sae.W_enc[:, 3] = 0.0  # a zero encoder column: cosine 0 by definition
    w_enc, w_dec = sae.W_enc.detach().double().numpy(), sae.W_dec.detach().double().numpy()
    want = [float(w_enc[:, i] @ w_dec[i] / (np.linalg.norm(w_enc[:, i]) * np.linalg.norm(w_dec[i])))
            if np.linalg.norm(w_enc[:, i]) > 0 else 0.0 for i in range(10)]
    for block in (1, 3, 4096):
        np.testing.assert_allclose(encoder_decoder_cosine(sae, block=block), want, rtol=1e-6,
                                   atol=1e-7)
    if kind == "matching_pursuit":  # W_enc is W_dec transposed (plus the test's noise)
        return
    assert encoder_decoder_cosine(sae)[3] == 0.0 and len(set(np.round(want, 4))) > 5


def brute_force_figures(model, sae, hook: str, tokens: np.ndarray,
                        included: np.ndarray | None = None) -> dict:
    """The whole model from the tokens, hook activations replaced at non-BOS positions (or those
    `included`) by the SAE's reconstruction (its forward pass over the whole batch: a temporal
    SAE's predicted part included) or by zero."""
    toks = torch.from_numpy(tokens).long()
    mask = toks != BOS if included is None else torch.from_numpy(included)
    x = hook_acts(model, hook, tokens)
    with torch.no_grad():
        recon = sae(x).detach()

    def splice(value, hook):
        return torch.where(mask.reshape(*mask.shape, *[1] * (value.dim() - 2)), recon, value)

    def zero(value, hook):
        return torch.where(mask.reshape(*mask.shape, *[1] * (value.dim() - 2)), 0.0, value)

    with torch.no_grad():
        clean = model(toks, return_type="loss", loss_per_token=True)
        spliced = model.run_with_hooks(toks, return_type="loss", loss_per_token=True,
                                       fwd_hooks=[(hook, splice)])
        zeroed = model.run_with_hooks(toks, return_type="loss", loss_per_token=True,
                                      fwd_hooks=[(hook, zero)])
    target = mask[:, 1:]
    xs = x[mask].reshape(int(mask.sum()), -1).double().numpy()
    rs = recon[mask].reshape(int(mask.sum()), -1).double().numpy()
    out = {name: float(loss[target].double().mean())
           for name, loss in (("clean", clean), ("spliced", spliced), ("zero", zeroed))}
    out["ev"] = 1 - ((xs - rs) ** 2).sum() / ((xs - xs.mean(0)) ** 2).sum()
    out["n_pos"], out["n_pred"] = len(xs), int(target.sum())
    return out


@pytest.mark.parametrize(("kind", "hook"), SAE_CASES)
def test_sae_figures_match_a_whole_model_forward(model, kind, hook):
    tokens = tiny_tokens(n_seqs=12)
    sae = tiny_sae(kind, hook)
    ref = brute_force_figures(model, sae, hook, tokens)
    hooked = HookedSAE(model, sae, parse_hook(hook))
    for batch, rows, n_seqs in ((5, 7, 256), (12, 1000, 12)):
        got = sae_figures(hooked, tokens, BOS, batch, rows, n_seqs=n_seqs)
        assert (got.n_seqs, got.n_positions, got.n_predictions) == (12, ref["n_pos"],
                                                                   ref["n_pred"])
        assert got.explained_variance == pytest.approx(ref["ev"], rel=1e-5)
        assert got.ce_clean == pytest.approx(ref["clean"], rel=1e-5)
        assert got.ce_spliced == pytest.approx(ref["spliced"], rel=1e-5)
        assert got.ce_zero == pytest.approx(ref["zero"], rel=1e-5)
        recovered = (ref["zero"] - ref["spliced"]) / (ref["zero"] - ref["clean"])
        assert got.loss_recovered == pytest.approx(recovered, rel=1e-3, abs=1e-4)
    assert ref["spliced"] != ref["clean"] and ref["zero"] != ref["clean"]


def test_sae_figures_use_the_first_sequences_only(model):
    tokens = tiny_tokens(n_seqs=12)
    sae = tiny_sae("topk", HOOK)
    hooked = HookedSAE(model, sae, parse_hook(HOOK))
    got = sae_figures(hooked, tokens, BOS, 3, 16, n_seqs=5)
    ref = brute_force_figures(model, sae, HOOK, tokens[:5])
    assert got.n_seqs == 5 and got.n_positions == ref["n_pos"]
    assert got.ce_spliced == pytest.approx(ref["spliced"], rel=1e-5)
    one_at_a_time = sae_figures(hooked, tokens, BOS, 12, 16, n_seqs=5, budget=1)  # B = 1
    assert one_at_a_time.ce_spliced == pytest.approx(ref["spliced"], rel=1e-5)
    assert one_at_a_time.explained_variance == pytest.approx(ref["ev"], rel=1e-5)
    meta = got.meta_fields()
    assert meta["eval_n_seqs"] == 5 and meta["loss_recovered"] == pytest.approx(
        got.loss_recovered)


def test_an_sae_equal_to_its_input_recovers_everything(model):
    """Perfect reconstruction: explained variance 1, spliced loss = clean loss, recovered 1."""
    sae = tiny_sae("standard", HOOK, d_sae=2 * HOOKS[HOOK])
    d = HOOKS[HOOK]
    eye = torch.eye(d)
    with torch.no_grad():  # relu(x) - relu(-x) = x
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    got = sae_figures(HookedSAE(model, sae, parse_hook(HOOK)), tiny_tokens(), BOS, 4, 9)
    assert got.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert got.ce_spliced == pytest.approx(got.ce_clean, abs=1e-5)
    assert got.loss_recovered == pytest.approx(1.0, abs=1e-4)


def test_sae_figures_leave_out_the_high_norm_positions(model):
    """With --max-norm-multiple, the SAE-level figures are over the included positions only:
    explained variance over them, the splice and the zeroing at them, losses of predicting them."""
    from tests.reference import reference_norm_mask

    tokens = tiny_tokens(n_seqs=12)
    sae = tiny_sae("topk", HOOK)
    mask = reference_norm_mask(hook_acts(model, HOOK, tokens).numpy(), tokens, BOS, 1.15)
    assert 0 < int(((tokens != BOS) & ~mask).sum())
    ref = brute_force_figures(model, sae, HOOK, tokens, included=mask)
    got = sae_figures(HookedSAE(model, sae, parse_hook(HOOK), max_norm_multiple=1.15), tokens,
                      BOS, 5, 7, n_seqs=12)
    assert (got.n_positions, got.n_predictions) == (ref["n_pos"], ref["n_pred"])
    assert got.explained_variance == pytest.approx(ref["ev"], rel=1e-5)
    assert got.ce_spliced == pytest.approx(ref["spliced"], rel=1e-5)
    assert got.ce_zero == pytest.approx(ref["zero"], rel=1e-5)


@pytest.mark.parametrize("kind", ["topk", "temporal"])
def test_sae_figures_of_sequences_with_no_included_position(model, kind):
    """Sequences of BOS only: no position counts, so the figures are NaN, not an error."""
    tokens = np.full((3, 12), BOS, dtype=np.int32)
    got = sae_figures(HookedSAE(model, tiny_sae(kind, HOOK), parse_hook(HOOK)), tokens, BOS, 2, 5)
    assert (got.n_positions, got.n_predictions) == (0, 0)
    assert np.isnan(got.explained_variance) and np.isnan(got.ce_spliced)
