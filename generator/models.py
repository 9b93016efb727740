"""Inputs: load the language model and the SAE, and check they fit together before any real work.

Every check here fails with one UserError line that names the problem and the fix (DESIGN §6):
hub names while offline, missing paths, unknown hooks, SAE width != hook width.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from generator.errors import UserError

log = logging.getLogger(__name__)

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class HookSite:
    """Where the SAE reads the model, and how its decoder maps back into the residual stream."""

    name: str
    """full hook name, e.g. blocks.1.hook_resid_pre."""
    layer: int
    """block index the hook is in."""
    kind: str
    """resid | attn_out | mlp_out | mlp_hidden | z."""

    @property
    def logit_direction(self) -> str:
        return {"mlp_hidden": "W_dec @ W_out", "z": "W_dec @ W_O"}.get(self.kind, "W_dec")


def parse_hook(name: str) -> HookSite:
    match = _BLOCK_HOOK.match(name)
    if not match:
        raise UserError(f"hook '{name}' is not inside a transformer block; use an SAE on a "
                        "blocks.N.* hook (resid, attn_out, mlp_out, mlp.hook_post, attn.hook_z)")
    layer, rest = int(match.group(1)), match.group(2)
    kinds = {"hook_resid_pre": "resid", "hook_resid_mid": "resid", "hook_resid_post": "resid",
             "hook_attn_out": "attn_out", "hook_mlp_out": "mlp_out", "mlp.hook_post": "mlp_hidden",
             "attn.hook_z": "z"}
    if rest not in kinds:
        raise UserError(f"hook '{name}' is not supported; supported: "
                        f"{', '.join('blocks.N.' + k for k in kinds)}")
    return HookSite(name=name, layer=layer, kind=kinds[rest])


def offline(timeout: float = 3.0) -> bool:
    """True if the Hugging Face hub cannot be used: offline flags set, or its host unreachable.
    A quick connect probe, because the hub client retries for tens of seconds before failing."""
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return False
    except OSError:
        return True


def looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or spec.endswith((".json", ".safetensors"))


def _hub_failure(what: str, name: str, flag: str, err: Exception | None = None) -> UserError:
    why = f" ({type(err).__name__})" if err else ""
    return UserError(f"{what} '{name}' is not a local path and could not be loaded from the hub"
                     f"{why}; pass a local directory with {flag} PATH")


def load_model(spec: str | None, device: str) -> Any:
    """A HookedTransformer from a local model directory (feature-browser format), the embedded demo
    (spec None) or a TransformerLens model name (needs the hub)."""
    from generator import demo

    if spec is None:
        return demo.load_model_dir(demo.DEMO_MODEL_DIR, device=device)
    path = Path(spec)
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model directory {path} has no config.json; pass a directory saved "
                            "by feature-browser (see generator/demo.py) or a TransformerLens name")
        return demo.load_model_dir(path, device=device)
    if looks_like_path(spec):
        raise UserError(f"model directory {spec} does not exist; check the --model path")
    if offline():
        raise _hub_failure("model", spec, "--model")
    from transformer_lens import HookedTransformer

    try:
        return HookedTransformer.from_pretrained(spec, device=device)
    except Exception as err:  # network / unknown name: the same fix for the user
        raise _hub_failure("model", spec, "--model", err) from None


def load_sae(spec: str | None, device: str) -> Any:
    """A sae_lens SAE from a local directory, the embedded demo (None) or 'release/id' (hub)."""
    from sae_lens import SAE

    from generator import demo

    path = demo.DEMO_SAE_DIR if spec is None else Path(spec)
    if path.exists():
        if not (path / "cfg.json").is_file():
            raise UserError(f"SAE directory {path} has no cfg.json; pass a sae_lens directory "
                            "with cfg.json + sae_weights.safetensors")
        return SAE.load_from_disk(path, device=device)
    assert spec is not None
    if looks_like_path(spec):
        raise UserError(f"SAE directory {spec} does not exist; check the --sae path")
    if "/" not in spec:
        raise UserError(f"SAE '{spec}' is neither a local directory nor 'release/id'; "
                        "pass --sae PATH or --sae RELEASE/ID")
    if offline():
        raise _hub_failure("SAE", spec, "--sae")
    release, sae_id = spec.split("/", 1)
    try:
        return SAE.from_pretrained(release, sae_id, device=device)
    except Exception as err:
        raise _hub_failure("SAE", spec, "--sae", err) from None


def sae_hook_name(sae: Any) -> str:
    hook = sae.cfg.metadata.get("hook_name") if sae.cfg.metadata else None
    if not hook:
        raise UserError("the SAE's cfg.json names no hook (metadata.hook_name); add it there")
    return str(hook)


def check_compatible(model: Any, sae: Any, site: HookSite) -> None:
    """Fail fast, before any real work, if the SAE cannot read this model at this hook."""
    if site.name not in model.hook_dict:
        raise UserError(f"the model has no hook '{site.name}' (it has {model.cfg.n_layers} "
                        "layers); pick an SAE trained on this model")
    widths = {"resid": model.cfg.d_model, "attn_out": model.cfg.d_model,
              "mlp_out": model.cfg.d_model, "mlp_hidden": model.cfg.d_mlp,
              "z": model.cfg.n_heads * model.cfg.d_head}
    if sae.cfg.d_in != widths[site.kind]:
        raise UserError(f"SAE d_in {sae.cfg.d_in} != width {widths[site.kind]} of hook "
                        f"'{site.name}'; the SAE was trained on another model or hook")
    if sae.cfg.normalize_activations not in ("none", "expected_average_only_in"):
        raise UserError(f"SAE activation normalization '{sae.cfg.normalize_activations}' is not "
                        "supported for ablation; fold it into the weights first")


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested} asked for, but no CUDA GPU is visible; "
                        "use --device cpu")
    return requested


def ln_folded(model: Any) -> bool:
    return model.cfg.normalization_type in ("LNPre", "RMSPre")
