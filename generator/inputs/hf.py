"""Hugging Face inputs: TransformerLens model names and sae_lens releases, from the hub or the
local cache, and `transformers` checkpoint folders.

Where a name is looked up: on the hub when it can be reached (the hub client keeps the local cache
current), otherwise in the local cache only, with the Hugging Face libraries switched to offline
mode first so that nothing waits on the network. The log says which of the two happened, and a
failure says where the name was looked for.

A checkpoint folder (`model.save_pretrained(dir)` + `tokenizer.save_pretrained(dir)`) is loaded
with `transformers`, its config mapped to a `HookedTransformerConfig` by TransformerLens' own
converter, and its weights converted from the loaded model (`hf_model=`), so any architecture
TransformerLens supports works without the hub.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from generator.errors import UserError
from generator.inputs import families

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECKPOINT_N_CTX = 2048
"""Context cap for checkpoint folders with rotary positions (no position table to match).
TransformerLens registers an n_ctx x n_ctx attention mask
per layer, and modern configs declare 128k positions (17 GB of masks); TransformerLens' own
configs for such models use 2048. --ctx is checked against it."""

PROCESSING = {"fold_ln": True, "center_writing_weights": True, "center_unembed": True,
              "fold_value_biases": True, "refactor_factored_attn_matrices": False}
"""HookedTransformer.from_pretrained's weight processing defaults: what an SAE whose config names
some of these flags saw for the flags it does not name (see `processing`)."""


def _offline_flag() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when the offline flags are set or the hub's host does not answer: a quick connect
    probe, because the hub client retries for tens of seconds before failing."""
    if _offline_flag():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def use_cache_only() -> None:
    """Offline mode for the Hugging Face libraries. The environment variable covers what is
    imported later; huggingface_hub reads it once at import, so its constant is set too."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True


def cache_dir() -> str:
    import huggingface_hub.constants

    return str(huggingface_hub.constants.HF_HUB_CACHE)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:120]}" if text else type(err).__name__


def from_hub_or_cache(what: str, name: str, flag: str, load: Callable[[], T]) -> T:
    """`load()` a named model or SAE from the hub when it can be reached, else from the local
    cache; one line on failure that says which was tried."""
    flagged = _offline_flag()
    online = hub_reachable()
    if not online:
        use_cache_only()
    try:
        value = load()
    except UserError:
        raise
    except Exception as err:  # unknown name, missing file, network: the same fix for the user
        if online:
            raise UserError(f"{what} '{name}' could not be loaded from the Hugging Face hub "
                            f"({_first_line(err)}); check the name, or pass a local directory "
                            f"with {flag} PATH") from None
        why = ("HF_HUB_OFFLINE is set, so the hub was not tried" if flagged else
               "the hub did not answer, so only the cache was searched")
        raise UserError(f"{what} '{name}' is not in the local Hugging Face cache ({cache_dir()}) "
                        f"and {why}; download it once while online, or pass a local directory "
                        f"with {flag} PATH") from None
    where = "the Hugging Face hub" if online else f"the local Hugging Face cache ({cache_dir()})"
    log.info("%s %s loaded from %s", what, name, where)
    return value


def load_named_model(name: str, device: str, options: dict[str, Any],
                     dtype: str = "float32") -> Any:
    """A model by hub name or TransformerLens alias, from the hub or the cache: its snapshot
    (config, tokenizer, safetensors weights) is loaded as a checkpoint folder, so that the
    checkpoint's own config decides the shapes (TransformerLens' tables by name would not fit a
    fine-tune or a miniature) and every family loads the same way."""
    def load() -> Any:
        return load_checkpoint(snapshot(name), device, options, name=name, dtype=dtype)

    return from_hub_or_cache("model", name, "--model", load)


MODEL_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.tiktoken"]
"""What a model's snapshot needs (configs, tokenizer, weights); not the .bin / .pth / .gguf
copies of the same weights that many repositories carry too."""


def snapshot(name: str) -> Path:
    """The local folder of a model's hub repository (TransformerLens aliases such as
    'gpt2-small' or 'gemma-2-2b' name their repository), downloaded when online."""
    from huggingface_hub import snapshot_download
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        repo = get_official_model_name(name)
    except ValueError:  # not in TransformerLens' list: a hub repository name
        repo = name
    folder = Path(snapshot_download(repo, allow_patterns=MODEL_FILES))
    if not any(folder.glob("*.safetensors")):  # older repositories: PyTorch weights only
        folder = Path(snapshot_download(repo, allow_patterns=[*MODEL_FILES, "*.bin"]))
    return folder


REFUSED_CONVERTERS = {
    "mntss_clt_layer_transcoder":
        "sae_lens loads one layer of this cross-layer transcoder with its decoders to every later "
        "layer summed into one, written at this layer; its ablation, logit effects and explained "
        "variance would not be the CLT's, so it is not built (a CLT needs its per-layer decoders)",
}
"""sae_lens converters whose output would run as another kind of SAE, by name: why each is refused."""


def load_named_sae(spec: str, device: str) -> Any:
    """A sae_lens SAE as 'release/id' (a release of sae_lens' directory, or a hub repo
    'owner/repo/folder'), from the hub or the cache."""
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    release, sae_id = spec.split("/", 1)
    directory = get_pretrained_saes_directory()
    if release not in directory and sae_id.count("/") >= 1:
        owner_repo, sae_id = sae_id.split("/", 1)
        release = f"{release}/{owner_repo}"
    converter = directory[release].conversion_func if release in directory else None
    if converter in REFUSED_CONVERTERS:
        raise UserError(f"--sae {spec}: {REFUSED_CONVERTERS[converter]}")

    def load() -> Any:
        with _shapes_from_cache_when_offline():
            return SAE.from_pretrained(release, sae_id, device=device)

    return from_hub_or_cache("SAE", spec, "--sae", load)


@contextmanager
def _shapes_from_cache_when_offline() -> Iterator[None]:
    """sae_lens' Gemma Scope 2 converter reads a weights file's tensor shapes with HTTP range
    requests, even when the file is in the local cache: offline, that fails. Offline, the shapes
    are read from the cached file's safetensors header instead (the same bytes the range
    requests would fetch)."""
    import huggingface_hub.constants
    from sae_lens.loading import pretrained_sae_loaders as loaders

    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        yield
        return
    online = loaders.get_safetensors_tensor_shapes
    loaders.get_safetensors_tensor_shapes = _cached_tensor_shapes
    try:
        yield
    finally:
        loaders.get_safetensors_tensor_shapes = online


def _cached_tensor_shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
    """Tensor name -> shape from the header of a safetensors file in the local cache."""
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo_id, filename, local_files_only=True)
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return {name: list(info["shape"]) for name, info in header.items() if name != "__metadata__"}


def is_checkpoint(config: dict[str, Any]) -> bool:
    """A transformers config.json (as opposed to a feature-browser model folder)."""
    return "model_type" in config or "architectures" in config


@contextmanager
def _config_alias(path: Path) -> Iterator[str]:
    """The folder's config.json in a folder TransformerLens reads as a plain local path.
    Its converter matches model families by substring ('llama', 'gemma') before it looks at a local
    folder, and then reads hard-coded sizes for that family instead of the folder's config. The
    converter also reads GPT-2's `n_ctx`, which transformers >= 5 no longer writes (it equals
    `n_positions`). The weights come from the loaded model, so the config is all it needs."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8-sig"))
    if "n_positions" in config:
        config.setdefault("n_ctx", config["n_positions"])
    with tempfile.TemporaryDirectory(prefix="fb-ckpt-") as tmp:
        alias = Path(tmp) / "checkpoint"
        alias.mkdir()
        (alias / "config.json").write_text(json.dumps(config), encoding="utf-8")
        yield str(alias)


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """TransformerLens logs its loading steps on the root logger at INFO (naming a temporary
    folder) and transformers draws a progress bar per load: noise in a one-line-per-problem
    CLI, which logs its own line once the model is loaded."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    level, bars = root.level, hf_logging.is_progress_bar_enabled()
    root.setLevel(max(level, logging.WARNING))
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        root.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def processing(options: dict[str, Any]) -> dict[str, bool]:
    """The weight processing the SAE's activations came from. When its config names any
    processing flag (sae_lens' `model_from_pretrained_kwargs`), sae_lens loaded the model with
    `from_pretrained(**kwargs)`: its defaults with those flags over them. When it names none, the
    model's own activations as `transformers` computes them: no processing at all."""
    if not any(key in options for key in PROCESSING):
        return dict.fromkeys(PROCESSING, False)
    return {key: bool(options.get(key, default)) for key, default in PROCESSING.items()}


def _allowed(cfg: Any, flags: dict[str, bool]) -> dict[str, bool]:
    """The flags less what the architecture cannot take (as from_pretrained decides it)."""
    from transformer_lens.utilities.activation_functions import softcap_enabled
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    flags = dict(flags)
    if cfg.positional_embedding_type == "shortformer":
        flags.update(fold_ln=False, center_writing_weights=False, center_unembed=False)
    if cfg.original_architecture in POST_NORM_ARCHITECTURES:
        flags.update(fold_ln=False, center_writing_weights=False)
    if softcap_enabled(cfg.output_logits_soft_cap):
        flags["center_unembed"] = False
    return flags


def describe_processing(flags: dict[str, bool]) -> str:
    """The index's line: which processing the activations went through."""
    on = [key for key, value in sorted(flags.items()) if value]
    return "weights processed: " + ", ".join(on) if on else "raw model activations"


def load_checkpoint(path: Path, device: str, options: dict[str, Any],
                    name: str | None = None, dtype: str = "float32") -> Any:
    """A HookedTransformer from a transformers checkpoint folder, entirely offline, its weights in
    `dtype`. Memory: the model twice on the host while converting (the transformers copy is
    freed after): 2 x parameters x 4 bytes in float32, x 2 bytes in bfloat16."""
    import torch
    from transformer_lens import HookedTransformer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fix = f"check that {path} holds a complete model.save_pretrained() / tokenizer.save_pretrained()"
    arch = _architecture(path)
    if arch in families.UNSUPPORTED:
        raise UserError(f"the {arch} checkpoint in {path} cannot be run exactly: "
                        f"{families.UNSUPPORTED[arch]}; use another model family")
    try:
        with _quiet_loading():
            hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
            tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as err:
        raise UserError(f"transformers cannot load the checkpoint in {path} "
                        f"({_first_line(err)}); {fix}") from None
    arch = (hf_model.config.architectures or [type(hf_model).__name__])[0]
    flags = processing(options)
    try:
        with _config_alias(path) as alias, _quiet_loading():
            cfg = _hooked_config(arch, alias, hf_model, flags["fold_ln"], device,
                                 getattr(torch, dtype))
            if cfg.n_ctx > CHECKPOINT_N_CTX and cfg.positional_embedding_type == "rotary":
                log.info("model context capped at %d positions (the config says %d)",
                         CHECKPOINT_N_CTX, cfg.n_ctx)
                cfg.n_ctx = CHECKPOINT_N_CTX
            state = _hooked_weights(arch, alias, cfg, hf_model)
    except Exception as err:  # an architecture TransformerLens has no converter for
        raise UserError(f"TransformerLens cannot convert the {arch} checkpoint in {path} "
                        f"({_first_line(err)}); use an architecture TransformerLens "
                        "supports") from None
    del hf_model
    cfg.model_name = name or path.resolve().name
    model: Any = HookedTransformer(cfg, tokenizer, move_to_device=False)
    applied = _allowed(cfg, flags)
    model.load_and_process_state_dict(state, **applied)
    if cfg.dtype != torch.float32:  # modules TransformerLens builds without cfg.dtype (MoE's)
        model = model.to(cfg.dtype)
    model.move_model_modules_to_device()
    model.weight_processing = applied  # what the store and the index record
    log.info("model %s (%s, %s) loaded from %s", cfg.model_name, arch,
             describe_processing(applied), path)
    return model.eval()


def _architecture(path: Path) -> str:
    """The checkpoint's class name as config.json states it (read before any weights load)."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return ""
    names = config.get("architectures") or [""]
    return str(names[0])


def _hooked_config(arch: str, alias: str, hf_model: Any, fold_ln: bool, device: str,
                   dtype: Any) -> Any:
    """TransformerLens' config for the checkpoint: its own converter's, or for the families it
    knows only by hub name (generator/inputs/families.py) the mapping of the folder's config."""
    from transformer_lens import HookedTransformerConfig
    from transformer_lens import loading_from_pretrained as loading

    if arch not in families.CONFIGS:
        return loading.get_pretrained_model_config(
            alias, hf_cfg=hf_model.config.to_dict(), fold_ln=fold_ln, device=device,
            dtype=dtype)
    fields = families.CONFIGS[arch](hf_model.config)
    if fold_ln:
        fields["normalization_type"] = "RMSPre"
    return HookedTransformerConfig.from_dict({
        **fields, "original_architecture": arch, "model_name": "checkpoint",
        "init_weights": False, "device": device, "dtype": dtype, "n_devices": 1})


def _hooked_weights(arch: str, alias: str, cfg: Any, hf_model: Any) -> dict[str, Any]:
    from transformer_lens import loading_from_pretrained as loading

    if arch in families.QWEN3_MOE:
        return families.qwen3_moe_weights(hf_model, cfg)
    return loading.get_pretrained_state_dict(alias, cfg, hf_model, dtype=cfg.dtype)

