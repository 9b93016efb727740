"""Tiny random `transformers` checkpoints of every model family in sae_lens' registry, saved as a
researcher's folder is (`save_pretrained` of the model and a character-level tokenizer).

Two layers, hidden 32 or 64, and each family's distinctive parts switched on at a size where they
act within a 16-token context: Gemma's sliding windows of 4 tokens and soft-caps low enough to bite,
Gemma 3's linear rope scaling, MoE routing over 4 experts. The weights are random but larger than
the initialisers' defaults, so that norms, caps and routing all matter to the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;()=+-_'\"\n0123456789"
SPECIAL = "<|endoftext|>"
VOCAB = len(CHARS) + 1

GEMMA_2_2B_WIDTHS = {"hidden_size": 2304, "num_attention_heads": 8, "head_dim": 256,
                     "num_key_value_heads": 4}
"""Gemma 2 2B's widths (the residual stream and the attention's 8 x 256), which Gemma Scope's
converter hard-codes; everything else stays tiny."""
QWEN3_1_7B_WIDTHS = {"hidden_size": 2048}
"""Qwen 3 1.7B's residual width, which Qwen Scope's converter hard-codes."""
LLAMA_16_LAYERS = {"num_hidden_layers": 16}
"""A tiny Llama deep enough for the temporal SAEs' layer 15 (their converter reads d_in from the
files but the layer from the folder name)."""
LLAMA_8B_LAYER_19 = {"hidden_size": 4096, "num_hidden_layers": 20, "num_attention_heads": 32,
                     "num_key_value_heads": 1, "intermediate_size": 16}
"""Llama 3.1 8B's residual width and heads (32 x 128) with the 20 layers that reach layer 19,
which the Goodfire and DeepSeek R1 converters hard-code; one key/value head and a 16-wide MLP keep
it to 0.7 B parameters."""

FAMILIES = ("gpt2", "llama", "gpt_neox", "mistral", "qwen3", "gemma2", "gemma3",
            "gemma3_multimodal", "qwen3_moe", "gpt_oss")
"""Every family a registry SAE sits on (sae_lens 6.54's pretrained_saes.yaml), in miniature."""


def save_tokenizer(folder: Path) -> None:
    """A character-level fast tokenizer (id 0 = BOS/EOS/unk), saved as transformers does."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {SPECIAL: 0, **{c: i + 1 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL,
                            unk_token=SPECIAL).save_pretrained(folder)


def _common(hidden: int = 32) -> dict[str, Any]:
    return {"vocab_size": VOCAB, "hidden_size": hidden, "num_hidden_layers": 2,
            "num_attention_heads": 4, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0,
            "max_position_embeddings": 64}


def _gemma_text(gemma3: bool, **sizes: Any) -> dict[str, Any]:
    return {**_common(), "intermediate_size": 64, "num_key_value_heads": 2, "head_dim": 16, **sizes,
            "sliding_window": 4, "query_pre_attn_scalar": 12,
            "layer_types": ["sliding_attention", "full_attention"],
            **({"rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}}}
               if gemma3 else {"attn_logit_softcapping": 2.0, "final_logit_softcapping": 3.0})}


def make_model(arch: str, **sizes: Any) -> Any:
    """A tiny random model of the family `arch` (one of FAMILIES); `sizes` override config fields
    of the Llama, Gemma and Qwen 3 families (a registry SAE's converter fixes hidden_size, say)."""
    import transformers as tf

    common = _common()
    if arch == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64, bos_token_id=0,
            eos_token_id=0))
    if arch == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(**{**common, "intermediate_size": 64,
                                                     "num_key_value_heads": 2, **sizes}))
    if arch == "mistral":
        return tf.MistralForCausalLM(tf.MistralConfig(**common, intermediate_size=64,
                                                      num_key_value_heads=2, sliding_window=None))
    if arch == "gpt_neox":
        return tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**common, intermediate_size=128,
                                                      rotary_pct=0.25))
    if arch == "qwen3":
        return tf.Qwen3ForCausalLM(tf.Qwen3Config(**{**common, "intermediate_size": 64,
                                                     "num_key_value_heads": 2, "head_dim": 8,
                                                     **sizes}))
    if arch == "qwen3_moe":
        return tf.Qwen3MoeForCausalLM(tf.Qwen3MoeConfig(
            **common, intermediate_size=64, moe_intermediate_size=16, num_experts=4,
            num_experts_per_tok=2, norm_topk_prob=True, num_key_value_heads=2, head_dim=8))
    if arch == "gpt_oss":
        return tf.GptOssForCausalLM(tf.GptOssConfig(
            **common, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
            num_key_value_heads=2, head_dim=8, sliding_window=4,
            layer_types=["sliding_attention", "full_attention"]))
    if arch == "gemma2":
        return tf.Gemma2ForCausalLM(tf.Gemma2Config(**_gemma_text(False, **sizes)))
    if arch == "gemma3":
        return tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(**_gemma_text(True, **sizes)))
    if arch == "gemma3_multimodal":
        vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "image_size": 28, "patch_size": 14}
        return tf.Gemma3ForConditionalGeneration(tf.Gemma3Config(
            text_config=_gemma_text(True), vision_config=vision, mm_tokens_per_image=1,
            image_token_index=VOCAB - 1, boi_token_index=VOCAB - 2, eoi_token_index=VOCAB - 3))
    raise ValueError(f"unknown family {arch}")


def save_checkpoint(folder: Path, arch: str, seed: int = 0, **sizes: Any) -> Path:
    """model.save_pretrained + tokenizer.save_pretrained of a tiny random model."""
    torch.manual_seed(seed)
    model = make_model(arch, **sizes)
    with torch.no_grad():  # weights large enough for norms, soft-caps and routing to matter
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.5 if "embed" in name else 0.2)
            elif "norm" in name:
                param.normal_(0, 0.3)
    model.save_pretrained(folder)
    save_tokenizer(folder)
    return folder


def hidden_states(folder: Path, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """transformers' own residual stream (embeddings, then after each layer) for `tokens`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return tuple(model(tokens, output_hidden_states=True).hidden_states)
