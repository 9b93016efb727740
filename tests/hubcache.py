"""A synthetic Hugging Face hub cache: miniature files in a release's own layout, so that
`--sae release/id` goes through sae_lens' `SAE.from_pretrained` and the release's converter
exactly as it would online, with the hub client in offline mode (no network here).

The cache layout is huggingface_hub's: `models--OWNER--NAME/refs/main` holds a commit id, and
`models--OWNER--NAME/snapshots/COMMIT/PATH` the files. Used by tests/inputs/test_registry.py,
tests/inputs/test_hf.py and
bench/registry.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from generator.compute.activations import HookedSAE
from generator.compute.engine import Engine, EngineSettings
from tests.helpers import cached
from tests.reference import assert_latent_matches, reference_latent

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Put `files` (path in the repository -> bytes) into the cache as `repo_id`'s main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for path, content in files.items():
        target = repo / "snapshots" / COMMIT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def safetensors_bytes(tensors: dict[str, torch.Tensor], scratch: Path) -> bytes:
    scratch.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(scratch))
    return scratch.read_bytes()


def gemma_3_files(folder: str, d_in: int, d_sae: int, scratch: Path, seed: int = 0,
                  affine: bool = False) -> dict[str, bytes]:
    """A Gemma Scope 2 folder (`resid_post_all/layer_1_width_16k_l0_big`, `transcoder_all/...`):
    config.json and params.safetensors with w_enc [d_in, d_sae], w_dec [d_sae, d_in], b_enc,
    b_dec, threshold (and affine_skip_connection [d_in, d_in] for an affine transcoder), random
    but with a small threshold so that latents fire."""
    gen = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(d_sae, d_in, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    tensors = {"w_enc": w_dec.T.clone(), "w_dec": w_dec,
               "b_enc": torch.randn(d_sae, generator=gen) * 0.3,
               "b_dec": torch.randn(d_in, generator=gen) * 0.1,
               "threshold": torch.full((d_sae,), 0.05)}
    if affine:
        tensors["affine_skip_connection"] = torch.randn(d_in, d_in, generator=gen) * 0.02
    config = {"architecture": "jump_relu", "model_name": "gemma-3-270m-pt",
              "affine_connection": affine, **_gemma_3_hf_hooks(folder)}
    return {f"{folder}/config.json": json.dumps(config).encode(),
            f"{folder}/params.safetensors": safetensors_bytes(tensors, scratch / folder / "p")}


def _gemma_3_hf_hooks(folder: str) -> dict[str, str]:
    """The transformers module outputs a Gemma Scope 2 folder was recorded at, as its config.json
    names them (`hf_hook_point_in` / `_out`)."""
    layer = int(re.search(r"layer_(\d+)", folder).group(1))  # type: ignore[union-attr]
    at = f"model.layers.{layer}"
    if "transcoder" in folder:
        return {"hf_hook_point_in": f"{at}.pre_feedforward_layernorm.output",
                "hf_hook_point_out": f"{at}.post_feedforward_layernorm.output"}
    if "attn_out" in folder:
        return {"hf_hook_point_in": f"{at}.self_attn.o_proj.input"}
    if "mlp_out" in folder:
        return {"hf_hook_point_in": f"{at}.post_feedforward_layernorm.output"}
    return {"hf_hook_point_in": f"{at}.output"}


def sae_lens_files(folder: str, cfg: dict, scratch: Path, seed: int = 0) -> dict[str, bytes]:
    """A release in sae_lens' own format (conversion_func none): cfg.json and
    sae_weights.safetensors, a standard SAE of cfg's d_in x d_sae."""
    gen = torch.Generator().manual_seed(seed)
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    w_dec = torch.randn(d_sae, d_in, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    tensors = {"W_enc": w_dec.T.clone(), "W_dec": w_dec,
               "b_enc": torch.randn(d_sae, generator=gen) * 0.3,
               "b_dec": torch.zeros(d_in)}
    return {f"{folder}/cfg.json": json.dumps(cfg).encode(),
            f"{folder}/sae_weights.safetensors": safetensors_bytes(tensors, scratch / folder / "w")}


DICT_CLASSES = ("AutoEncoder", "AutoEncoderTopK", "GatedAutoEncoder", "BatchTopKSAE")
"""dictionary_learning's classes in the registry's releases (sae_bench's vanilla, topk, gated,
matryoshka / batch-top-k sweeps)."""


def dictionary_learning_files(folder: str, dict_class: str, d_in: int, d_sae: int, layer: int,
                              scratch: Path, seed: int = 0) -> dict[str, bytes]:
    """A dictionary_learning trainer folder (conversion_func dictionary_learning_1): config.json
    (trainer: layer, dict_class, activation_dim, dict_size, lm_name, k; buffer: ctx_len) and ae.pt
    with that class's state-dict keys."""
    gen = torch.Generator().manual_seed(seed)
    dec = torch.randn(d_in, d_sae, generator=gen)
    dec /= dec.norm(dim=0, keepdim=True)
    state: dict[str, torch.Tensor] = {"encoder.weight": dec.T.clone(), "decoder.weight": dec}
    if dict_class == "GatedAutoEncoder":
        state |= {"decoder_bias": torch.zeros(d_in), "r_mag": torch.randn(d_sae, generator=gen) * 0.1,
                  "gate_bias": torch.randn(d_sae, generator=gen) * 0.3,
                  "mag_bias": torch.randn(d_sae, generator=gen) * 0.3}
    else:
        state |= {"encoder.bias": torch.randn(d_sae, generator=gen) * 0.3}
        state["bias" if dict_class == "AutoEncoder" else "b_dec"] = torch.zeros(d_in)
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        state |= {"k": torch.tensor(8), "threshold": torch.tensor(0.05)}
    trainer = {"layer": layer, "dict_class": dict_class, "activation_dim": d_in,
               "dict_size": d_sae, "lm_name": "demo", "k": 8}
    scratch.mkdir(parents=True, exist_ok=True)
    torch.save(state, scratch / "ae.pt")
    return {f"{folder}/config.json": json.dumps({"trainer": trainer,
                                                 "buffer": {"ctx_len": 128}}).encode(),
            f"{folder}/ae.pt": (scratch / "ae.pt").read_bytes()}


def exact_on(model, sae, site) -> None:
    """The engine's pass-1 statistics (count, max, top sequences) of every 7th latent equal brute
    force over a few random sequences of `model` (the demo's, or a family's miniature)
    (AssertionError otherwise)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, int(model.cfg.d_vocab), size=(6, 24)).astype(np.int32)
    tokens[:, 0] = model.tokenizer.bos_token_id
    bos = int(model.tokenizer.bos_token_id)
    hooked = HookedSAE(model, sae, site)  # (which turns on sae_lens' hook_z reshaping if needed)
    mlp_input = site.kind == "mlp_input"  # the MLP's input: the norm applied to resid_mid
    name = f"blocks.{site.layer}.hook_resid_mid" if mlp_input else site.name
    cache = cached(model, torch.from_numpy(tokens).long(), name)
    with torch.no_grad():
        read = cache[name]
        if mlp_input:
            read = model.blocks[site.layer].ln2(read)
        dense = sae.encode(read).float().numpy() * (tokens != bos)[..., None]
    assert (dense > 0).any()
    engine = Engine(hooked, tokens, bos,
                    EngineSettings(k=3, n_bins=5, n_intervals=2, m=1, batch_size=4, quiet=True,
                                   coact=False))  # pass 1's counts are what is compared
    p1 = engine.pass1(np.arange(len(tokens)))
    for i in range(0, sae.cfg.d_sae, 7):
        assert_latent_matches(p1, None, i, reference_latent(dense, tokens != bos, i, 3, 5, 2, 1, 0))


def llama_scope_files(folder: str, d_in: int, d_sae: int, hook: str, scratch: Path,
                      seed: int = 0) -> dict[str, bytes]:
    """A Llama Scope folder (conversion_func llama_scope): hyperparams.json (d_model, d_sae,
    hook_point_in, a scalar jump_relu_threshold, the dataset's average activation norm) and
    checkpoints/final.safetensors with encoder / decoder weight and bias."""
    gen = torch.Generator().manual_seed(seed)
    dec = torch.randn(d_in, d_sae, generator=gen)
    dec /= dec.norm(dim=0, keepdim=True)
    tensors = {"encoder.weight": dec.T.clone(), "decoder.weight": dec,
               "encoder.bias": torch.randn(d_sae, generator=gen) * 0.3,
               "decoder.bias": torch.zeros(d_in)}
    hyper = {"d_model": d_in, "d_sae": d_sae, "hook_point_in": hook, "hook_point_out": hook,
             "jump_relu_threshold": 0.05, "dataset_average_activation_norm": {"in": d_in ** 0.5,
                                                                              "out": d_in ** 0.5}}
    return {f"{folder}/hyperparams.json": json.dumps(hyper).encode(),
            f"{folder}/checkpoints/final.safetensors": safetensors_bytes(tensors,
                                                                         scratch / folder / "w")}


def llama_scope_r1_files(folder: str, d_in: int, expansion: int, hook: str, scratch: Path,
                         seed: int = 0) -> dict[str, bytes]:
    """A Llama Scope R1-distill folder (conversion_func llama_scope_r1_distill): config.json
    (d_model, expansion_factor, hook_point_in) and sae_weights.safetensors with encoder / decoder
    weight and bias and a log JumpReLU threshold."""
    gen = torch.Generator().manual_seed(seed)
    d_sae = d_in * expansion
    dec = torch.randn(d_in, d_sae, generator=gen)
    dec /= dec.norm(dim=0, keepdim=True)
    tensors = {"encoder.weight": dec.T.clone(), "decoder.weight": dec,
               "encoder.bias": torch.randn(d_sae, generator=gen) * 0.3,
               "decoder.bias": torch.zeros(d_in),
               "log_jumprelu_threshold": torch.full((d_sae,), 0.05).log()}
    config = {"d_model": d_in, "expansion_factor": expansion, "hook_point_in": hook}
    return {f"{folder}/config.json": json.dumps(config).encode(),
            f"{folder}/sae_weights.safetensors": safetensors_bytes(tensors, scratch / folder / "w")}


def connor_rob_hook_z_files(filename: str, d_in: int, d_sae: int, hook: str, scratch: Path,
                            seed: int = 0) -> dict[str, bytes]:
    """An attention-output SAE of conversion_func connor_rob_hook_z: `NAME_cfg.json` (act_size,
    dict_size, act_name) beside `NAME.pt`, a torch state dict in sae_lens' own names."""
    gen = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(d_sae, d_in, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    state = {"W_enc": w_dec.T.clone(), "W_dec": w_dec,
             "b_enc": torch.randn(d_sae, generator=gen) * 0.3, "b_dec": torch.zeros(d_in)}
    scratch.mkdir(parents=True, exist_ok=True)
    torch.save(state, scratch / "w.pt")
    config = {"act_size": d_in, "dict_size": d_sae, "act_name": hook}
    return {filename.split(".pt")[0] + "_cfg.json": json.dumps(config).encode(),
            filename: (scratch / "w.pt").read_bytes()}


def _sparse_directions(d_sae: int, d_in: int, seed: int, per_latent: int = 8) -> np.ndarray:
    """[d_sae, d_in] unit rows with `per_latent` non-zero entries each: the full widths the
    converters hard-code, in files that compress to a few MB."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((d_sae, d_in), dtype=np.float32)
    cols = rng.integers(0, d_in, size=(d_sae, per_latent))
    rows[np.arange(d_sae)[:, None], cols] = rng.standard_normal((d_sae, per_latent))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def gemma_2_files(folder: str, d_in: int, d_sae: int, seed: int = 0) -> dict[str, bytes]:
    """A Gemma Scope folder (conversion_func gemma_2: `layer_0/width_16k/average_l0_105`,
    `embedding/width_4k/...`): params.npz with w_enc [d_in, d_sae], w_dec [d_sae, d_in], b_enc,
    b_dec, threshold, at the converter's fixed widths."""
    import io

    rng = np.random.default_rng(seed + 1)
    w_dec = _sparse_directions(d_sae, d_in, seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, w_enc=w_dec.T.copy(), w_dec=w_dec,
                        b_enc=(rng.standard_normal(d_sae) * 0.3).astype(np.float32),
                        b_dec=np.zeros(d_in, np.float32),
                        threshold=np.full(d_sae, 0.05, np.float32))
    return {f"{folder}/params.npz": buf.getvalue()}


def qwen_scope_files(filename: str, d_in: int, d_sae: int, scratch: Path,
                     seed: int = 0) -> dict[str, bytes]:
    """A Qwen Scope checkpoint (conversion_func qwen_scope: `layer0.sae.pt`): a torch.save'd dict
    with W_enc [d_sae, d_in], W_dec [d_in, d_sae], b_enc, b_dec, at the converter's fixed widths
    (hundreds of MB: torch.save does not compress)."""
    rng = np.random.default_rng(seed + 1)
    w_dec = torch.from_numpy(_sparse_directions(d_sae, d_in, seed))
    path = scratch / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"W_enc": w_dec.clone(), "W_dec": w_dec.T.contiguous(),
                "b_enc": torch.from_numpy((rng.standard_normal(d_sae) * 0.3).astype(np.float32)),
                "b_dec": torch.zeros(d_in)}, path)
    data = path.read_bytes()
    path.unlink()
    return {filename: data}


def linear_pair_files(filename: str, prefix: tuple[str, str], d_in: int, d_sae: int,
                      scratch: Path, seed: int = 0) -> dict[str, bytes]:
    """A torch.save'd nn.Linear pair at a converter's fixed widths: `{enc}.weight` [d_sae, d_in],
    `{dec}.weight` [d_in, d_sae] and their biases, in bfloat16 (half the bytes; the converters
    cast or keep it as their config says). Goodfire's (conversion_func goodfire:
    encoder_linear / decoder_linear) and qresearch's DeepSeek R1 (deepseek_r1: encoder / decoder)."""
    enc, dec = prefix
    rng = np.random.default_rng(seed + 1)
    w_dec = torch.from_numpy(_sparse_directions(d_sae, d_in, seed)).bfloat16()
    path = scratch / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"{enc}.weight": w_dec, f"{dec}.weight": w_dec.T.contiguous(),
                f"{enc}.bias": torch.from_numpy(rng.standard_normal(d_sae) * 0.3).bfloat16(),
                f"{dec}.bias": torch.zeros(d_in, dtype=torch.bfloat16)}, path)
    data = path.read_bytes()
    path.unlink()
    return {filename: data}


def temporal_files(folder: str, d_in: int, exp_factor: int, scratch: Path,
                   seed: int = 0) -> dict[str, bytes]:
    """A canrager/temporalSAEs folder (conversion_func temporal: `llama-3.1-8B/layer_15/temporal`):
    conf.yaml (llm.dimin, the sae's exp_factor, heads, attention layers, bottleneck, top-k,
    tied weights, scaling factor; data.dtype) and latest_ckpt.safetensors with D, b, E and the
    attention layers' weights, from a random sae_lens TemporalSAE of that shape."""
    import sae_lens
    import yaml

    sae_cfg = {"exp_factor": exp_factor, "n_heads": 2, "n_attn_layers": 1, "bottleneck_factor": 4,
               "sae_diff_type": "topk", "kval_topk": 8, "tied_weights": False,
               "scaling_factor": 0.37}
    torch.manual_seed(seed)
    sae = sae_lens.TemporalSAE(sae_lens.TemporalSAEConfig(
        d_in=d_in, d_sae=d_in * exp_factor, n_heads=2, n_attn_layers=1, bottleneck_factor=4,
        sae_diff_type="topk", kval_topk=8, tied_weights=False))
    state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    names = {"W_dec": "D", "b_dec": "b", "W_enc": "E"}
    tensors = {names.get(k, k): v for k, v in state.items() if k in names or k.startswith("attn_")}
    tensors["b"] = torch.randn(d_in) * 0.1
    conf = {"llm": {"dimin": d_in}, "sae": sae_cfg, "data": {"dtype": "float32"}}
    return {f"{folder}/conf.yaml": yaml.safe_dump(conf).encode(),
            f"{folder}/latest_ckpt.safetensors": safetensors_bytes(tensors, scratch / folder / "w")}


def mwhanna_files(layer: int, d_model: int, d_sae: int, scratch: Path,
                  seed: int = 0) -> dict[str, bytes]:
    """A mwhanna transcoder repository (conversion_func mwhanna_transcoder): wandb-config.yaml
    (d_model, d_feature, batch_size), config.yaml (model_name) and layer_N.safetensors with
    W_enc [d_sae, d_model] (the converter transposes it), W_dec [d_sae, d_model], b_enc, b_dec."""
    gen = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(d_sae, d_model, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    tensors = {"W_enc": w_dec.clone(), "W_dec": w_dec.flip(0).contiguous(),
               "b_enc": torch.randn(d_sae, generator=gen) * 0.3 - 0.2,
               "b_dec": torch.randn(d_model, generator=gen) * 0.1}
    wandb = (f"d_model:\n  value: {d_model}\nd_feature:\n  value: {d_sae}\n"
             "batch_size:\n  value: 128\n")
    return {"wandb-config.yaml": wandb.encode(), "config.yaml": b"model_name: Qwen/Qwen3-0.6B\n",
            f"layer_{layer}.safetensors": safetensors_bytes(tensors, scratch / f"l{layer}")}
