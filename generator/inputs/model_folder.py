"""The model-folder format: a TransformerLens model saved without any name the hub would resolve.

A folder holds `config.json` (the HookedTransformerConfig arguments), `model.safetensors`
(float16 weights) and the Hugging Face tokenizer files. The embedded demo is saved this way
(generator/demo/train.py), and `load_model` (generator/inputs/models.py) loads any such folder,
entirely offline.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy imports stay out of `import generator.inputs.model_folder`
    from tokenizers import Tokenizer
    from transformer_lens import HookedTransformer
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKEN = "<|endoftext|>"
"""The one special token (id 0) of the demo's tokenizer: BOS, EOS, pad and unk at once, as in
GPT-2."""


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> PreTrainedTokenizerFast:
    """Save as a HF tokenizer and reload it from `path`, so that its name_or_path is the local
    directory: TransformerLens re-creates tokenizers from that name and must never reach the hub."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=SPECIAL_TOKEN, eos_token=SPECIAL_TOKEN,
        pad_token=SPECIAL_TOKEN, unk_token=SPECIAL_TOKEN, add_bos_token=True,
    )
    wrapped.save_pretrained(str(path))
    return load_tokenizer(path)


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path), add_bos_token=True)


def build_model(config: dict[str, Any], tokenizer: PreTrainedTokenizerFast,
                device: str = "cpu") -> HookedTransformer:
    """A freshly initialised model with the tokenizer attached (TransformerLens' per-construction
    DeprecationWarning is silenced: it is about its own API, not ours)."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(config.get("seed") or 0)
    cfg = HookedTransformerConfig(**config, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(cfg, tokenizer=tokenizer)


def save_model_dir(model: HookedTransformer, tokenizer: Tokenizer | PreTrainedTokenizerFast,
                   path: Path, config: dict[str, Any] | None = None) -> None:
    """Write a model directory. Weights go to float16, halving the committed size; a model this
    small loses nothing measurable to it (metrics.json is computed on the reloaded float32 copy)."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    path.mkdir(parents=True, exist_ok=True)
    if isinstance(tokenizer, Tokenizer):
        save_tokenizer(tokenizer, path)
    else:
        tokenizer.save_pretrained(str(path))
    config = config or model_config_from(model)
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    state = {name: (t.half() if t.is_floating_point() else t).contiguous().cpu()
             for name, t in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))


def model_config_from(model: HookedTransformer) -> dict[str, Any]:
    """config.json for a model built elsewhere: the same fields `model_config` writes."""
    cfg = model.cfg
    keys = ("model_name", "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx",
            "d_vocab", "act_fn", "normalization_type", "positional_embedding_type",
            "default_prepend_bos", "seed")
    return {key: getattr(cfg, key) for key in keys}


def load_model_dir(path: Path, device: str = "cpu") -> HookedTransformer:
    """Rebuild a model saved by `save_model_dir`, weights back in float32, entirely offline."""
    from safetensors.torch import load_file

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    model = build_model(config, load_tokenizer(path), device)
    state = load_file(str(path / "model.safetensors"), device=device)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})
    return model.eval()


