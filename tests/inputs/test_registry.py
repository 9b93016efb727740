"""Registry releases through sae_lens' own loaders and converters, offline: a synthetic Hugging
Face cache (tests/hubcache.py) holds miniature files in each release's layout, sized for the demo
model, and `--sae release/id` must load, land on the right hooks, and give the engine's exact
numbers on the demo model."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.inputs.hf import load_named_sae
from generator.inputs.sites import check_compatible, sae_site
from tests.hubcache import (
    connor_rob_hook_z_files,
    dictionary_learning_files,
    exact_on,
    gemma_2_files,
    gemma_3_files,
    llama_scope_files,
    llama_scope_r1_files,
    mwhanna_files,
    sae_lens_files,
    write_repo,
)

GEMMA_3 = [  # (release, id, folder, architecture, read, write)
    ("gemma-scope-2-270m-pt-res-all", "layer_1_width_16k_l0_big", "resid_post_all",
     "jumprelu", "blocks.1.hook_resid_post", None),
    ("gemma-scope-2-270m-pt-mlp-all", "layer_1_width_16k_l0_small", "mlp_out_all",
     "jumprelu", "blocks.1.hook_mlp_out", None),
    ("gemma-scope-2-270m-pt-att-all", "layer_0_width_16k_l0_big", "attn_out_all",
     "jumprelu", "blocks.0.attn.hook_z", None),
    ("gemma-scope-2-270m-pt-transcoders-all", "layer_1_width_16k_l0_big", "transcoder_all",
     "jumprelu_transcoder", "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"),
    ("gemma-scope-2-270m-pt-transcoders-all", "layer_1_width_16k_l0_big_affine", "transcoder_all",
     "jumprelu_skip_transcoder", "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"),
]


GEMMA_2 = [  # (release, id, hook, d_in): Gemma Scope on Gemma 2 2B, at its fixed widths
    ("gemma-scope-2b-pt-res", "embedding/width_4k/average_l0_6", "hook_embed", 2304),
    ("gemma-scope-2b-pt-res-canonical", "layer_0/width_16k/canonical",
     "blocks.0.hook_resid_post", 2304),
    ("gemma-scope-2b-pt-mlp-canonical", "layer_1/width_16k/canonical", "blocks.1.hook_mlp_out",
     2304),
    ("gemma-scope-2b-pt-att-canonical", "layer_0/width_16k/canonical", "blocks.0.attn.hook_z",
     2048),
    ("gemma-scope-2b-pt-transcoders", "layer_0/width_16k/average_l0_76",
     "blocks.0.ln2.hook_normalized", 2304),  # the gemma_2_transcoder converter, same layout
]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty synthetic cache, with the hub client pointed at it and offline."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture(scope="module")
def demo():
    from generator.demo import DEMO_MODEL_DIR
    from generator.inputs.model_folder import load_model_dir

    return load_model_dir(DEMO_MODEL_DIR)


def through_converter(hub: Path, release: str, files, sae_id: str | None = None):
    """Write `files(path)` (path: the SAE's place in its repository) into the synthetic cache as
    the release's repository, then load `release/sae_id` (its first SAE when None) through
    sae_lens' loader and converter; the SAE and its site."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    info = get_pretrained_saes_directory()[release]
    sae_id = sae_id or next(iter(info.saes_map))
    write_repo(hub, info.repo_id, files(info.saes_map[sae_id]))
    sae = load_named_sae(f"{release}/{sae_id}", "cpu")
    return sae, sae_site(sae)


def first_release_of(converter: str) -> str:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return next(r for r, i in get_pretrained_saes_directory().items()
                if i.conversion_func == converter)


@pytest.mark.parametrize(("release", "sae_id", "folder", "arch", "read", "write"), GEMMA_3)
def test_gemma_scope_2_releases_load_offline_through_their_converter(
        hub, tmp_path, demo, release, sae_id, folder, arch, read, write):
    """sae_lens' gemma_3 converter (63% of the registry's SAEs): d_in and d_sae come from the
    weights file's header, which it fetches with HTTP range requests; offline, from the cache."""

    def files(path: str) -> dict[str, bytes]:
        assert path == f"{folder}/{sae_id}"
        return gemma_3_files(path, 128, 48, tmp_path / "scratch", affine=sae_id.endswith("affine"))

    sae, site = through_converter(hub, release, files, sae_id)
    assert (str(sae.cfg.architecture()), site.name, site.out_name) == (arch, read, write)
    # a transcoder was recorded at the pre-MLP norm's output (its hf_hook_name): read there
    tapped = read.replace("hook_mlp_in", "ln2.hook_normalized") if write else read
    assert site.reads == tapped
    check_compatible(demo, sae, site)
    exact_on(demo, sae, site)


def test_a_release_in_sae_lens_own_format_loads_offline(hub, tmp_path, demo):
    """conversion_func none: cfg.json + sae_weights.safetensors as sae_lens saves them."""
    sae_id = "blocks.1.hook_resid_pre"
    cfg = {"architecture": "standard", "d_in": 128, "d_sae": 40, "dtype": "float32",
           "device": "cpu", "model_name": "gpt2-small", "hook_name": sae_id,
           "hook_head_index": None, "prepend_bos": True, "dataset_path": "x",
           "context_size": 128, "normalize_activations": "none",
           "apply_b_dec_to_input": True}
    sae, site = through_converter(hub, "gpt2-small-res-jb",
                                  lambda path: sae_lens_files(path, cfg, tmp_path / "s"), sae_id)
    assert site.name == sae_id and not site.is_transcoder
    check_compatible(demo, sae, site)
    exact_on(demo, sae, site)


@pytest.mark.parametrize(("dict_class", "arch"), [
    ("AutoEncoder", "standard"), ("AutoEncoderTopK", "topk"), ("GatedAutoEncoder", "gated"),
    ("BatchTopKSAE", "jumprelu")])
def test_dictionary_learning_releases_load_offline_through_their_converter(
        hub, tmp_path, demo, dict_class, arch):
    """conversion_func dictionary_learning_1 (sae_bench's sweeps): config.json + ae.pt."""
    sae, site = through_converter(
        hub, "sae_bench_pythia70m_sweep_topk_ctx128_0730",
        lambda path: dictionary_learning_files(path, dict_class, 128, 40, 1, tmp_path / "s"))
    assert (str(sae.cfg.architecture()), site.name) == (arch, "blocks.1.hook_resid_post")
    check_compatible(demo, sae, site)
    exact_on(demo, sae, site)


@pytest.mark.parametrize(("converter", "files"), [
    # hyperparams.json + checkpoints/final.safetensors, bfloat16 weights, a scalar threshold
    # rescaled by the activation norm
    ("llama_scope", lambda path, tmp: llama_scope_files(path, 128, 40,
                                                         "blocks.1.hook_resid_post", tmp)),
    # config.json (d_model, expansion_factor) + sae_weights.safetensors, a log threshold
    ("llama_scope_r1_distill", lambda path, tmp: llama_scope_r1_files(
        path, 128, 1, "blocks.1.hook_resid_post", tmp))])
def test_llama_scope_releases_load_offline_through_their_converter(hub, tmp_path, demo,
                                                                   converter, files):
    sae, site = through_converter(hub, first_release_of(converter),
                                  lambda path: files(path, tmp_path / "scratch"))
    assert (str(sae.cfg.architecture()), site.name) == ("jumprelu", "blocks.1.hook_resid_post")
    check_compatible(demo, sae, site)
    exact_on(demo, sae, site)


def test_an_attention_sae_of_connor_rob_hook_z_loads_offline(hub, tmp_path, demo):
    """conversion_func connor_rob_hook_z: a hook_z SAE read flattened over the heads."""
    sae, site = through_converter(
        hub, "gpt2-small-hook-z-kk",
        lambda path: connor_rob_hook_z_files(path, 128, 40, "blocks.1.attn.hook_z",
                                             tmp_path / "scratch"))
    assert (str(sae.cfg.architecture()), site.name, site.kind) == (
        "standard", "blocks.1.attn.hook_z", "z")
    check_compatible(demo, sae, site)
    exact_on(demo, sae, site)


def test_a_cross_layer_transcoder_layer_is_refused_before_loading(hub):
    """sae_lens' CLT converter sums a latent's decoders to every later layer into one: built as a
    transcoder, its ablation would not be the CLT's. Refused by name, nothing downloaded."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from generator.errors import UserError

    release = first_release_of("mntss_clt_layer_transcoder")
    sae_id = next(iter(get_pretrained_saes_directory()[release].saes_map))
    with pytest.raises(UserError, match="cross-layer transcoder.*decoders to every later layer"):
        load_named_sae(f"{release}/{sae_id}", "cpu")


def test_a_release_missing_from_the_cache_is_one_line(hub):
    from generator.errors import UserError

    with pytest.raises(UserError, match="is not in the local Hugging Face cache"):
        load_named_sae("gemma-scope-2-270m-pt-res-all/layer_1_width_16k_l0_big", "cpu")


@pytest.mark.slow  # a real build through the CLI
def test_build_with_a_gemma_scope_2_transcoder_by_name_offline(tmp_path):
    """What a user offline types, with the release in their cache: `--sae release/id`."""
    import os
    import subprocess
    import sys

    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    release, sae_id = "gemma-scope-2-270m-pt-transcoders-all", "layer_1_width_16k_l0_big_affine"
    info = get_pretrained_saes_directory()[release]
    cache = tmp_path / "hub"
    write_repo(cache, info.repo_id, gemma_3_files(info.saes_map[sae_id], 128, 48,
                                                  tmp_path / "scratch", affine=True))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "generator.cli", "build", "--sae",
                           f"{release}/{sae_id}", "--n-seqs", "16", "--ctx", "32", "--quiet",
                           "--out", str(tmp_path / "site"), "--store", str(tmp_path / "store")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"SAE {release}/{sae_id} loaded from the local Hugging Face cache" in done.stderr
    index = (tmp_path / "site" / "index.html").read_text()
    assert "reads blocks.1.hook_mlp_in → writes blocks.1.hook_mlp_out" in index
    assert "jumprelu_skip_transcoder" in index


@pytest.fixture(scope="module")
def gemma_2_2b(tmp_path_factory):
    """A 2-layer Gemma 2 with Gemma 2 2B's widths (d_model 2,304, 8 heads of 256), the rest tiny:
    the gemma_2 converter hard-codes those widths."""
    from generator.inputs.models import load_model
    from tests.checkpoints import GEMMA_2_2B_WIDTHS, save_checkpoint

    folder = save_checkpoint(tmp_path_factory.mktemp("gemma2") / "gemma-2-2b", "gemma2",
                             **GEMMA_2_2B_WIDTHS)
    return load_model(str(folder), "cpu")


@pytest.mark.slow
@pytest.mark.parametrize(("release", "sae_id", "hook", "d_in"), GEMMA_2)
def test_gemma_scope_releases_load_offline_through_their_converter(hub, gemma_2_2b, release,
                                                                   sae_id, hook, d_in):
    """sae_lens' gemma_2 converter (2,833 of the registry's SAEs): widths fixed by release name,
    params.npz; on a Gemma 2 model of those widths, exact."""
    def files(path: str) -> dict[str, bytes]:
        return gemma_2_files(path, d_in, 4096 if "width_4k" in path else 16384)

    sae, site = through_converter(hub, release, files, sae_id)
    assert site.name == hook and int(sae.cfg.d_in) == d_in
    check_compatible(gemma_2_2b, sae, site)
    exact_on(gemma_2_2b, sae, site)


def test_a_mwhanna_transcoder_reads_the_mlp_input(hub, tmp_path, demo):
    """mwhanna's Qwen 3 transcoders (208 in the registry): widths from their wandb config, input
    `blocks.N.mlp.hook_in` (TransformerLens 3's bridge name for the MLP's input after its norm),
    read here as the norm's output; weights unfolded (their config asks fold_ln False)."""
    release = "mwhanna-qwen3-0.6b-transcoders-lowl0"

    def files(path: str) -> dict[str, bytes]:
        assert path == "layer_1.safetensors"
        return mwhanna_files(1, 128, 40, tmp_path / "scratch")

    sae, site = through_converter(hub, release, files, "layer_1")
    assert (site.name, site.reads, site.writes) == (
        "blocks.1.mlp.hook_in", "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out")
    check_compatible(demo, sae, site)
    exact_on(demo, sae, site)


def test_a_temporal_sae_loads_offline_and_builds_exactly_with_its_rescale_folded(hub, tmp_path):
    """conversion_func temporal: d_in from conf.yaml, the layer from the folder name (15, so a
    tiny 16-layer Llama), a constant scalar rescale that `prepared` folds into the weights with
    the same codes and output; then the engine equals brute force over whole sequences."""
    import torch
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    import tests.checkpoints as checkpoints
    from generator.inputs.models import load_model, prepared
    from tests.hubcache import temporal_files

    release, sae_id = "temporal-sae-llama-3.1-8b", "blocks.15.hook_resid_post"
    info = get_pretrained_saes_directory()[release]
    write_repo(hub, info.repo_id, temporal_files(info.saes_map[sae_id], 32, 4, tmp_path / "s"))
    sae = load_named_sae(f"{release}/{sae_id}", "cpu")
    assert sae.cfg.normalize_activations == "constant_scalar_rescale"
    x = torch.randn(3, 10, 32)
    with torch.no_grad():
        codes, out = sae.encode(x), sae(x)
        assert (codes > 0).any()
        prepared(sae)
        assert sae.cfg.normalize_activations == "none"
        torch.testing.assert_close(sae.encode(x), codes, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sae(x), out, rtol=1e-4, atol=1e-5)
    folder = checkpoints.save_checkpoint(tmp_path / "llama", "llama",
                                         **checkpoints.LLAMA_16_LAYERS)
    model = load_model(str(folder), "cpu")
    site = sae_site(sae)
    assert (str(sae.cfg.architecture()), site.name) == ("temporal", "blocks.15.hook_resid_post")
    check_compatible(model, sae, site)
    exact_on(model, sae, site)


def test_a_tied_temporal_sae_is_untied_to_fold_its_rescale():
    import sae_lens
    import torch

    from generator.inputs.models import fold_scalar_rescale

    torch.manual_seed(0)
    sae = sae_lens.TemporalSAE(sae_lens.TemporalSAEConfig(
        d_in=16, d_sae=32, n_heads=2, bottleneck_factor=4, kval_topk=6, tied_weights=True,
        normalize_activations="constant_scalar_rescale", activation_normalization_factor=2.5))
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        codes, out = sae.encode(x), sae(x)
        fold_scalar_rescale(sae)
        assert not sae.cfg.tied_weights
        torch.testing.assert_close(sae.encode(x), codes, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sae(x), out, rtol=1e-4, atol=1e-5)
