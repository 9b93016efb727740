"""Transcoders on real sae_lens objects: encoded at the hook they read, ablated and spliced in at
the hook they write, against brute force with plain TransformerLens hooks; and every refusal of
an SAE that would otherwise run as something it is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.compute.activations import HookedSAE, residual_directions
from generator.compute.engine import Engine, EngineSettings
from generator.compute.quality import sae_figures
from generator.errors import UserError
from generator.inputs.sites import check_compatible, parse_hook, sae_site
from tests.helpers import (
    BOS,
    TRANSCODER_HOOKS,
    TRANSCODER_KINDS,
    cached,
    tiny_model,
    tiny_sae,
    tiny_tokens,
    tiny_transcoder,
)
from tests.reference import assert_latent_matches, reference_latent

K, N_BINS, N_INT, M, SEED = 3, 6, 3, 2, 5


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def site_of(model, sae):
    site = sae_site(sae)
    check_compatible(model, sae, site)
    return site


def dense(model, sae, read: str, tokens: np.ndarray) -> np.ndarray:
    """Every latent activation, encoded from the read hook of a plain full forward pass."""
    with torch.no_grad():
        cache = cached(model, torch.from_numpy(tokens).long(), read)
        return sae.encode(cache[read]).float().numpy() * (tokens != BOS)[..., None]


def brute_force_dloss(model, sae, write: str, tokens, acts, s: int, i: int) -> np.ndarray:
    """docs/STATISTICS.md's ablation for a transcoder, literally: the whole model re-run with
    a[s,t,i] W_dec[i] removed from the activation of the hook it writes."""
    toks = torch.from_numpy(tokens[s:s + 1]).long()
    delta = torch.from_numpy(acts[s, :, i])[:, None] * sae.W_dec[i].detach()[None, :]

    def ablate(value, hook):
        return value - delta.to(value.dtype)

    with torch.no_grad():
        clean = model(toks, return_type="loss", loss_per_token=True)[0]
        ablated = model.run_with_hooks(toks, return_type="loss", loss_per_token=True,
                                       fwd_hooks=[(write, ablate)])[0]
    return (ablated - clean).numpy()


@pytest.mark.parametrize("kind", TRANSCODER_KINDS)
@pytest.mark.parametrize(("read", "write"), TRANSCODER_HOOKS)
def test_transcoder_statistics_and_ablation_equal_brute_force(model, kind, read, write):
    sae = tiny_transcoder(kind, read, write)
    site = site_of(model, sae)
    assert (site.name, site.writes, site.is_transcoder) == (read, write, True)
    tokens = tiny_tokens()
    acts = dense(model, sae, read, tokens)
    assert (acts > 0).any(), "the test transcoder must have active latents"
    engine = Engine(HookedSAE(model, sae, site), tokens, BOS,
                    EngineSettings(k=K, n_bins=N_BINS, n_intervals=N_INT, m=M, seed=SEED,
                                   batch_size=3, quiet=True))
    p1 = engine.pass1(np.arange(len(tokens)))
    p2 = engine.pass2(p1.max_act)
    for i in range(sae.cfg.d_sae):
        assert_latent_matches(p1, p2, i, reference_latent(acts, tokens != BOS, i, K, N_BINS,
                                                          N_INT, M, SEED))
    ex = engine.examples(p1, p2).examples
    assert ex.dloss is not None and len(ex.seq) > 5
    for row in range(len(ex.seq)):
        s, i = int(ex.seq[row]), int(ex.latent[row])
        np.testing.assert_allclose(ex.acts[row], acts[s, :, i], rtol=1e-5, atol=1e-6)
        want = brute_force_dloss(model, sae, write, tokens, acts, s, i)
        ok = tokens[s, 1:] != BOS
        np.testing.assert_allclose(ex.dloss[row, :-1][ok], want[ok], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", TRANSCODER_KINDS)
def test_transcoder_quality_figures_are_at_the_hook_it_writes(model, kind):
    """Explained variance of the MLP output by the transcoder's whole output (skip term
    included), and the loss with that output spliced in at the output hook."""
    read, write = TRANSCODER_HOOKS[0]
    sae = tiny_transcoder(kind, read, write)
    tokens = tiny_tokens()
    figures = sae_figures(HookedSAE(model, sae, site_of(model, sae)), tokens, BOS,
                          batch_size=4, encode_rows=7)
    toks = torch.from_numpy(tokens).long()
    mask = toks != BOS
    with torch.no_grad():
        cache = cached(model, toks, [read, write])
        x = cache[write][mask].double()
        x_hat = sae(cache[read])[mask].double()  # sae_lens' own forward: skip term included
        ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        spliced_out = cache[write].clone()
        spliced_out[mask] = sae(cache[read])[mask]

        def splice(value, hook):
            return spliced_out.to(value.dtype)

        losses = model.run_with_hooks(toks, return_type="loss", loss_per_token=True,
                                      fwd_hooks=[(write, splice)])
    target_ok = mask[:, 1:]
    assert figures.explained_variance == pytest.approx(float(ev), rel=1e-5)
    assert figures.ce_spliced == pytest.approx(float(losses[target_ok].double().mean()), rel=1e-5)
    if "skip" in kind:  # the skip term is part of the output: without it the variance differs
        with torch.no_grad():
            plain = ((x - sae.decode(sae.encode(cache[read]))[mask].double()) ** 2).sum()
        assert float(plain) != pytest.approx(float(((x - x_hat) ** 2).sum()), rel=1e-3)


def test_a_transcoders_logit_directions_are_its_decoder_rows_in_the_output_space(model):
    sae = tiny_transcoder("transcoder", "blocks.0.hook_resid_mid", "blocks.1.hook_attn_out")
    site = site_of(model, sae)
    assert site.logit_direction == "W_dec"
    torch.testing.assert_close(residual_directions(model, sae, site), sae.W_dec.detach().float())


def test_an_sae_on_the_embeddings_and_on_mlp_in_is_exact(model):
    """hook_embed is before block 0: its ablation re-runs the whole model from the tokens."""
    for hook in ("hook_embed", "blocks.1.hook_mlp_in"):
        sae = tiny_sae("standard", hook)
        site = site_of(model, sae)
        tokens = tiny_tokens()
        acts = dense(model, sae, hook, tokens)
        engine = Engine(HookedSAE(model, sae, site), tokens, BOS,
                        EngineSettings(k=K, n_bins=N_BINS, n_intervals=N_INT, m=M, seed=SEED,
                                       batch_size=4, quiet=True))
        p1 = engine.pass1(np.arange(len(tokens)))
        ex = engine.examples(p1, engine.pass2(p1.max_act)).examples
        assert ex.dloss is not None and len(ex.seq) > 5
        for row in range(0, len(ex.seq), 3):
            s, i = int(ex.seq[row]), int(ex.latent[row])
            want = brute_force_dloss(model, sae, hook, tokens, acts, s, i)
            ok = tokens[s, 1:] != BOS
            np.testing.assert_allclose(ex.dloss[row, :-1][ok], want[ok], rtol=1e-4, atol=1e-5)


def test_what_would_run_as_something_else_is_refused(model):
    import sae_lens

    def refused(sae, *needles: str) -> None:
        with pytest.raises(UserError) as err:
            site_of(model, sae)
        message = str(err.value)
        assert "\n" not in message and all(n in message for n in needles), message

    no_out = tiny_transcoder("transcoder", "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out")
    no_out.cfg.metadata.hook_name_out = None
    refused(no_out, "is a transcoder", "names no output hook", "metadata.hook_name_out")
    backwards = tiny_transcoder("transcoder", "blocks.1.hook_resid_mid", "blocks.0.hook_mlp_out")
    refused(backwards, "before the hook it reads")
    normalized = tiny_sae("standard", "blocks.1.hook_resid_pre")
    normalized.cfg.metadata.hook_name = "blocks.1.ln2.hook_normalized"
    refused(normalized, "normalized space", "only a transcoder")
    sae_with_out = tiny_sae("standard", "blocks.1.hook_resid_pre")
    sae_with_out.cfg.metadata.hook_name_out = "blocks.1.hook_mlp_out"
    refused(sae_with_out, "writes where it reads", "save it as a transcoder")
    head = tiny_sae("standard", "blocks.1.attn.hook_z")
    head.cfg.metadata.hook_head_index = 1
    refused(head, "one attention head")
    unknown = tiny_sae("standard", "blocks.1.hook_resid_pre")
    unknown.cfg.metadata.hook_name = "blocks.1.attn.hook_pattern"
    refused(unknown, "'blocks.1.attn.hook_pattern' is not supported")
    abstopk = sae_lens.AbsTopKSAE(sae_lens.AbsTopKSAEConfig(d_in=16, d_sae=8, k=2))
    abstopk.cfg.metadata.hook_name = "blocks.1.hook_resid_pre"
    refused(abstopk, "'abstopk'", "negative")
    temporal = tiny_sae("temporal", "blocks.1.hook_resid_pre")
    temporal.cfg.metadata.hook_name = "blocks.1.attn.hook_z"
    refused(temporal, "temporal SAE on 'blocks.1.attn.hook_z' is not supported", "residual")
    wide = tiny_transcoder("transcoder", "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out")
    wide.cfg.d_out = 32
    refused(wide, "d_out 32 != width 16", "blocks.1.hook_mlp_out")


def test_the_engine_turns_hook_mlp_in_on_itself():
    """TransformerLens skips hook_mlp_in unless told: a fresh model must still be read there."""
    fresh = tiny_model()
    sae = tiny_transcoder("transcoder", *TRANSCODER_HOOKS[1])
    _, read = HookedSAE(fresh, sae, site_of(fresh, sae)).run_to_hook(
        torch.from_numpy(tiny_tokens()).long())
    assert read.shape == (10, 12, 16)


def test_parse_hook_names_the_supported_hooks():
    with pytest.raises(UserError, match="hook_embed and blocks.N.hook_resid_pre"):
        parse_hook("unembed.hook_in")
    site = parse_hook("blocks.2.ln2.hook_normalized", "blocks.3.hook_mlp_out")
    assert (site.layer, site.write_layer, site.write_kind) == (2, 3, "mlp_out")
