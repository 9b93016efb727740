"""generator.compute.promptview: the prompt view's numbers against a brute force on the tiny real
model (activations = the SAE's encode of the hook activations; Δloss = the whole model re-run
with the latent's decoder contribution removed at every non-BOS position, minus the clean
loss), against the engine on the same tokens, for any chunking, and the store round trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from generator.store.io import read_store, write_store
from tests.fake_store import make_store
from tests.helpers import CASES, cached


def tiny_prompts() -> list[np.ndarray]:
    """BOS-led prompts of several lengths (up to the tiny model's 16), one with a BOS inside
    (a text holding the separator), one of a single token after BOS."""
    from tests.helpers import BOS

    rng = np.random.default_rng(3)
    prompts = [rng.integers(1, 50, size=n).astype(np.int32) for n in (15, 7, 11, 1)]
    prompts[2][5] = BOS
    return [np.concatenate([[BOS], p]).astype(np.int32) for p in prompts]


def brute_force(model, sae, hook: str, toks: np.ndarray):
    """Per position, every latent's activation; per active latent, Δloss at every position;
    the clean loss. Literally: encode the cached hook activation, and re-run the whole model with
    h - a[t, i] W_dec[i] at every position (a is 0 at BOS)."""
    import torch

    from tests.helpers import BOS

    t = torch.from_numpy(toks[None]).long()
    with torch.no_grad():
        cache = cached(model, t, hook)
        acts = sae.encode(cache[hook])[0].float()  # the batch of one: a sequence as a whole
        acts[torch.from_numpy(toks == BOS)] = 0
        clean = model(t, return_type="loss", loss_per_token=True)[0]
        dloss = {}
        for i in torch.nonzero(acts.amax(0) > 0)[:, 0].tolist():
            delta = acts[:, i, None] * sae.W_dec[i].detach()[None, :]

            def ablate(value, hook, delta=delta):
                return value - delta.reshape(value.shape[1:]).to(value.dtype)

            ablated = model.run_with_hooks(t, return_type="loss", loss_per_token=True,
                                           fwd_hooks=[(hook, ablate)])[0]
            dloss[i] = (ablated - clean).numpy()
    return acts.numpy(), dloss, clean.numpy()


@pytest.fixture(scope="module")
def model():
    from tests.helpers import tiny_model

    return tiny_model()


def compute(model, kind, hook, **kw):
    from generator.compute.activations import HookedSAE
    from generator.compute.promptview import compute_prompts
    from generator.inputs.sites import parse_hook
    from tests.helpers import BOS, tiny_sae

    sae = tiny_sae(kind, hook)
    toks = tiny_prompts()
    texts = [f"prompt {n}" for n in range(len(toks))]
    out = compute_prompts(HookedSAE(model, sae, parse_hook(hook)), texts, toks,
                          np.zeros(len(toks), bool), BOS, **kw)
    return sae, toks, out


@pytest.mark.parametrize("kind, hook", CASES)
def test_prompt_numbers_equal_brute_force(model, kind, hook):
    from tests.helpers import BOS

    sae, toks, out = compute(model, kind, hook)
    assert len(out) == len(toks)
    n_checked = 0
    for n, tk in enumerate(toks):
        acts, dloss, clean = brute_force(model, sae, hook, tk)
        ok = tk[1:] != BOS  # predictions whose target is not BOS
        # the clean loss
        np.testing.assert_allclose(out.loss[n][:-1][ok], clean[ok], rtol=1e-4, atol=1e-5)
        assert np.isnan(out.loss[n][-1]) and np.isnan(out.loss[n][:-1][~ok]).all()
        # every active entry, in (position, latent) order, with its activation and Δloss
        e = out.prompt == n
        pos, lat = np.nonzero(acts > 0)
        assert out.pos[e].tolist() == pos.tolist() and out.latent[e].tolist() == lat.tolist()
        np.testing.assert_allclose(out.act[e], acts[pos, lat], rtol=1e-5, atol=1e-6)
        want = np.array([np.append(dloss[i], np.nan)[p] if p + 1 < len(tk) and tk[p + 1] != BOS
                         else np.nan for p, i in zip(pos, lat, strict=True)])
        np.testing.assert_allclose(out.dloss[e], want, rtol=1e-4, atol=1e-5)  # NaN at NaN
        # per latent over the prompt
        s = out.s_prompt == n
        ids = sorted(dloss)
        assert out.s_latent[s].tolist() == ids
        assert out.s_n_active[s].tolist() == [int((acts[:, i] > 0).sum()) for i in ids]
        np.testing.assert_allclose(out.s_max_act[s], [acts[:, i].max() for i in ids], rtol=1e-5)
        np.testing.assert_allclose(out.s_sum_act[s], [acts[:, i].sum() for i in ids], rtol=1e-5)
        np.testing.assert_allclose(out.s_sum_abs_dloss[s],
                                   [np.abs(dloss[i][ok]).sum() for i in ids],
                                   rtol=1e-4, atol=1e-5)
        n_checked += len(ids)
    assert n_checked > 20  # the case exercises real ablations
    assert np.isfinite(out.dloss).sum() > 20


@pytest.mark.parametrize("kind, hook", CASES[:2])
def test_prompt_numbers_equal_the_engines_on_the_same_tokens(model, kind, hook):
    """Corpus sequences given as prompts: every shown example's activations and Δloss (the
    engine's examples + ablation stage) are the prompt view's at the same (sequence, latent)."""
    from generator.compute.activations import HookedSAE
    from generator.compute.engine import Engine, EngineSettings
    from generator.compute.promptview import compute_prompts
    from generator.inputs.sites import parse_hook
    from tests.helpers import BOS, tiny_sae, tiny_tokens

    sae = tiny_sae(kind, hook)
    hooked = HookedSAE(model, sae, parse_hook(hook))
    tokens = tiny_tokens()
    engine = Engine(hooked, tokens, BOS, EngineSettings(k=3, m=2, batch_size=4, quiet=True))
    p1 = engine.pass1(np.arange(len(tokens)))
    ex = engine.examples(p1, engine.pass2(p1.max_act)).examples
    out = compute_prompts(hooked, [str(s) for s in range(len(tokens))], list(tokens),
                          np.zeros(len(tokens), bool), BOS)
    assert ex.dloss is not None and len(ex.seq) > 10
    for row in range(len(ex.seq)):
        s, i = int(ex.seq[row]), int(ex.latent[row])
        e = (out.prompt == s) & (out.latent == i)
        acts = np.zeros(tokens.shape[1], np.float32)
        acts[out.pos[e]] = out.act[e]
        np.testing.assert_allclose(acts, ex.acts[row], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.dloss[e], ex.dloss[row][out.pos[e]], rtol=1e-4,
                                   atol=1e-5)


def test_prompt_numbers_do_not_depend_on_chunking(model):
    _, _, a = compute(model, "standard", "blocks.1.hook_resid_pre")
    _, _, b = compute(model, "standard", "blocks.1.hook_resid_pre", encode_rows=3, chunk=2)
    for name in ("pos", "latent", "s_latent", "s_n_active"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist()
    for name in ("act", "dloss", "s_max_act", "s_sum_act", "s_sum_abs_dloss"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6)


def test_store_round_trip(model, tmp_path):
    _, _, prompts = compute(model, "topk", "blocks.0.hook_attn_out")
    data = replace(make_store(), prompts=prompts)
    write_store(data, tmp_path / "store")
    back = read_store(tmp_path / "store").prompts
    assert back is not None and back.text == prompts.text
    for name in ("tokens", "loss"):
        for x, y in zip(getattr(back, name), getattr(prompts, name), strict=True):
            np.testing.assert_array_equal(x, y)
    for name in ("truncated", "prompt", "pos", "latent", "act", "dloss", "s_prompt", "s_latent",
                 "s_n_active", "s_max_act", "s_sum_act", "s_sum_abs_dloss"):
        got, want = getattr(back, name), getattr(prompts, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want)
    # a store without prompts has none of the files
    write_store(make_store(), tmp_path / "plain")
    assert read_store(tmp_path / "plain").prompts is None
    assert not list((tmp_path / "plain").glob("prompt*"))
