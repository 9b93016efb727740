"""Inputs: HookedTransformer configs (and, where TransformerLens has none, weight converters) for
the checkpoint families that TransformerLens only knows by their hub names.

TransformerLens builds Gemma 2 and Gemma 3 from hard-coded tables keyed by the official names
(`google/gemma-2-2b`, ...), so a checkpoint folder or a cached snapshot of those families is
refused ("Gemma2ForCausalLM is not currently supported") and, by name, a miniature or fine-tuned
copy would get the full-size table. Qwen 3 MoE it does not know at all. Here each such config is
mapped from the checkpoint's own `config.json`, field by field, onto the components TransformerLens
already has (Gemma's pre- and post-norms, soft-capping, sliding-window layers and per-layer rotary
bases; Qwen 3's per-head q/k norms with TransformerLens' MoE block), and the weights go through
TransformerLens' own Gemma converter, or `qwen3_moe_weights` below. Every mapping is checked in
tests/inputs/test_families.py against `transformers`' own forward pass on tiny random checkpoints.

Memory: the configs are a few fields; `qwen3_moe_weights` views the checkpoint's tensors (it
splits the batched expert tensors into per-expert views, no copy), so converting holds the model
once more only when HookedTransformer copies the state dict in (as for every family).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

GEMMA = ("Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration")
QWEN3_MOE = ("Qwen3MoeForCausalLM",)
_DELTANET = "its Gated DeltaNet (linear-attention) layers have no TransformerLens component"
UNSUPPORTED = dict.fromkeys(("Qwen3_5ForCausalLM", "Qwen3_5ForConditionalGeneration",
                             "Qwen3_5MoeForCausalLM", "Qwen3_5MoeForConditionalGeneration"),
                            _DELTANET)
"""Families in sae_lens' registry that cannot be run exactly yet, and why (said in one line)."""


def text_config(hf_config: Any) -> Any:
    """The language model's config: a multimodal Gemma 3 keeps it under `text_config`."""
    return getattr(hf_config, "text_config", None) or hf_config


def _rope(text: Any, layer_type: str | None = None) -> dict[str, Any]:
    """transformers 5's rope parameters, per layer type where the model has several."""
    params = getattr(text, "rope_parameters", None) or {}
    if layer_type is not None and layer_type in params:
        params = params[layer_type]
    theta = params.get("rope_theta", getattr(text, "rope_theta", 10000.0))
    return {**params, "rope_theta": float(theta)}


def _linear_scaling(params: dict[str, Any]) -> float:
    """Gemma 3 (4B and up) scales its global layers' positions linearly; no other rope type is
    mapped, so another one is refused rather than run with unscaled positions."""
    kind = params.get("rope_type", "default")
    if kind == "default":
        return 1.0
    if kind == "linear":
        return float(params["factor"])
    raise NotImplementedError(f"rope_type {kind!r} is not mapped onto TransformerLens")


def gemma_config(hf_config: Any) -> dict[str, Any]:
    """Gemma 2 / Gemma 3 (text, or the language model of a multimodal checkpoint)."""
    text = text_config(hf_config)
    gemma3 = getattr(text, "model_type", "") in ("gemma3_text", "gemma3")
    types = list(text.layer_types)
    cfg: dict[str, Any] = {
        "d_model": text.hidden_size, "d_head": text.head_dim, "n_heads": text.num_attention_heads,
        "n_key_value_heads": text.num_key_value_heads, "d_mlp": text.intermediate_size,
        "n_layers": text.num_hidden_layers, "n_ctx": text.max_position_embeddings,
        "eps": text.rms_norm_eps, "d_vocab": text.vocab_size,
        "act_fn": text.hidden_activation, "initializer_range": text.initializer_range,
        "normalization_type": "RMS", "final_rms": True, "gated_mlp": True,
        "use_normalization_before_and_after": True,
        "positional_embedding_type": "rotary", "rotary_dim": text.head_dim,
        "use_attn_scale": True, "attn_scale": math.sqrt(text.query_pre_attn_scalar),
        "window_size": text.sliding_window, "use_local_attn": True,
        "attn_types": ["local" if t == "sliding_attention" else "global" for t in types],
        "attn_scores_soft_cap": float(text.attn_logit_softcapping or -1.0),
        "output_logits_soft_cap": float(text.final_logit_softcapping or -1.0),
        "tie_word_embeddings": bool(getattr(hf_config, "tie_word_embeddings", True)),
        "default_prepend_bos": True,
    }
    if gemma3:
        full, local = _rope(text, "full_attention"), _rope(text, "sliding_attention")
        cfg.update(use_qk_norm=True, rotary_base=full["rope_theta"],
                   rotary_base_local=local["rope_theta"],
                   rotary_scaling_factor=_linear_scaling(full))
        if _linear_scaling(local) != 1.0:
            raise NotImplementedError("scaled positions on sliding-window layers are not mapped")
    else:
        params = _rope(text)
        if _linear_scaling(params) != 1.0:
            raise NotImplementedError("scaled rotary positions on Gemma 2 are not mapped")
        cfg["rotary_base"] = params["rope_theta"]
    return cfg


def qwen3_moe_config(hf_config: Any) -> dict[str, Any]:
    """Qwen 3 MoE: Qwen 3's attention (per-head q/k RMS norms) with TransformerLens' MoE block
    (softmax router, top-k, optionally renormalised: `norm_topk_prob`)."""
    text = text_config(hf_config)
    if getattr(text, "mlp_only_layers", None) or getattr(text, "decoder_sparse_step", 1) != 1:
        raise NotImplementedError("dense layers between the MoE layers (mlp_only_layers / "
                                  "decoder_sparse_step) are not mapped")
    if getattr(text, "use_sliding_window", False):
        raise NotImplementedError("sliding-window attention on Qwen 3 MoE is not mapped")
    d_head = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    params = _rope(text)
    if _linear_scaling(params) != 1.0:
        raise NotImplementedError("scaled rotary positions on Qwen 3 MoE are not mapped")
    return {
        "d_model": text.hidden_size, "d_head": d_head, "n_heads": text.num_attention_heads,
        "n_key_value_heads": text.num_key_value_heads, "d_mlp": text.moe_intermediate_size,
        "n_layers": text.num_hidden_layers, "n_ctx": text.max_position_embeddings,
        "eps": text.rms_norm_eps, "d_vocab": text.vocab_size, "act_fn": text.hidden_act,
        "initializer_range": text.initializer_range, "normalization_type": "RMS",
        "final_rms": True, "gated_mlp": True, "use_qk_norm": True,
        "positional_embedding_type": "rotary", "rotary_dim": d_head,
        "rotary_base": params["rope_theta"], "rotary_adjacent_pairs": False,
        "use_attn_scale": True, "num_experts": text.num_experts,
        "experts_per_token": text.num_experts_per_tok,
        "norm_topk_prob": bool(text.norm_topk_prob),
        "tie_word_embeddings": bool(getattr(text, "tie_word_embeddings", False)),
        "default_prepend_bos": False,
    }


def qwen3_moe_weights(model: Any, cfg: Any) -> dict[str, torch.Tensor]:
    """A Qwen3MoeForCausalLM's weights in TransformerLens' names. transformers 5 stores each
    layer's experts batched (`gate_up_proj` [experts, 2 d_mlp, d_model], `down_proj`
    [experts, d_model, d_mlp]); TransformerLens' MoE holds one gated MLP per expert."""
    base, state = model.model, {}
    state["embed.W_E"] = base.embed_tokens.weight
    for i, layer in enumerate(base.layers):
        state.update(_attention_weights(layer.self_attn, cfg, f"blocks.{i}"))
        state[f"blocks.{i}.ln1.w"] = layer.input_layernorm.weight
        state[f"blocks.{i}.ln2.w"] = layer.post_attention_layernorm.weight
        state.update(_expert_weights(layer.mlp, cfg, f"blocks.{i}.mlp"))
    state["ln_final.w"] = base.norm.weight
    state["unembed.W_U"] = model.lm_head.weight.T
    state["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=cfg.dtype)
    return state


def _attention_weights(attn: Any, cfg: Any, prefix: str) -> dict[str, torch.Tensor]:
    """Grouped-query attention with per-head q/k norms and no biases (Qwen 3)."""
    n_kv = cfg.n_key_value_heads or cfg.n_heads
    kv = "_" if cfg.n_key_value_heads else ""

    def heads(w: torch.Tensor, n: int) -> torch.Tensor:  # [n d_head, d_model] -> [n, d_model, d_head]
        return w.reshape(n, cfg.d_head, cfg.d_model).transpose(1, 2)

    zeros = torch.zeros
    return {
        f"{prefix}.attn.W_Q": heads(attn.q_proj.weight, cfg.n_heads),
        f"{prefix}.attn.{kv}W_K": heads(attn.k_proj.weight, n_kv),
        f"{prefix}.attn.{kv}W_V": heads(attn.v_proj.weight, n_kv),
        f"{prefix}.attn.W_O": attn.o_proj.weight.T.reshape(cfg.n_heads, cfg.d_head, cfg.d_model),
        f"{prefix}.attn.q_norm.w": attn.q_norm.weight,
        f"{prefix}.attn.k_norm.w": attn.k_norm.weight,
        f"{prefix}.attn.b_Q": zeros(cfg.n_heads, cfg.d_head, dtype=cfg.dtype),
        f"{prefix}.attn.{kv}b_K": zeros(n_kv, cfg.d_head, dtype=cfg.dtype),
        f"{prefix}.attn.{kv}b_V": zeros(n_kv, cfg.d_head, dtype=cfg.dtype),
        f"{prefix}.attn.b_O": zeros(cfg.d_model, dtype=cfg.dtype),
    }


def _expert_weights(moe: Any, cfg: Any, prefix: str) -> dict[str, torch.Tensor]:
    """The router and each expert's gate / up / down projections (nn.Linear layout: [out, in])."""
    state = {f"{prefix}.W_gate.weight": moe.gate.weight}
    gate_up, down = moe.experts.gate_up_proj, moe.experts.down_proj
    d_mlp = cfg.d_mlp
    for e in range(cfg.num_experts):
        state[f"{prefix}.experts.{e}.W_gate.weight"] = gate_up[e, :d_mlp]
        state[f"{prefix}.experts.{e}.W_in.weight"] = gate_up[e, d_mlp:]
        state[f"{prefix}.experts.{e}.W_out.weight"] = down[e]
    return state


CONFIGS: dict[str, Callable[[Any], dict[str, Any]]] = {
    **{arch: gemma_config for arch in GEMMA}, **{arch: qwen3_moe_config for arch in QWEN3_MOE}}
"""Architecture -> the mapping of its transformers config onto HookedTransformerConfig fields."""
