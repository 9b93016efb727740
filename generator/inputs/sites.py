"""Where an SAE reads the model and where its latents write: the hook site, checked against the
SAE's architecture and the model before any compute.

An SAE reads and writes one hook: a latent's decoder row W_dec[i] is a direction in the space it
reads. A transcoder reads `hook_name` (say the MLP's input) and its latents write at
`hook_name_out` (the MLP's output): W_dec[i] lives in the output space. Every statistic that uses
the decoder (ablation, logit effects, explained variance, the spliced loss) therefore works at the
write hook, and the encoder at the read hook (docs/STATISTICS.md, "Transcoders").

Architectures sae_lens registers for inference and what happens to each:
- standard, gated, topk, jumprelu, matching_pursuit: an SAE, reading and writing one hook;
- transcoder, skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder: read -> write, with
  metadata.hook_name_out required (a transcoder without it would silently run as an SAE);
- temporal: an SAE whose code at a position also attends over the sequence's earlier positions
  (its "predicted" part, which is not a latent): encoded over whole sequences (SEQUENTIAL), on
  hooks whose activations are one vector per position (not hook_z);
- abstopk: refused (its activations can be negative; every statistic here counts a > 0).
Anything else is refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from generator.errors import UserError

SAE_ARCHITECTURES = ("standard", "gated", "topk", "jumprelu", "matching_pursuit", "temporal")
SEQUENTIAL = ("temporal",)
"""architectures whose codes depend on the sequence's earlier positions: encoded per sequence."""
TRANSCODER_ARCHITECTURES = ("transcoder", "skip_transcoder", "jumprelu_transcoder",
                            "jumprelu_skip_transcoder")
REFUSED = {
    "abstopk": "its activations can be negative, and every statistic here counts a latent as "
               "active when a > 0",
}

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")
READS = {"hook_resid_pre": "resid", "hook_resid_mid": "resid", "hook_resid_post": "resid",
         "hook_mlp_in": "resid", "hook_attn_out": "attn_out", "hook_mlp_out": "mlp_out",
         "mlp.hook_post": "mlp_hidden", "attn.hook_z": "z",
         "ln1.hook_normalized": "normalized", "ln2.hook_normalized": "normalized",
         "mlp.hook_in": "mlp_input"}
"""block hooks an SAE or a transcoder may read, by kind (the part after `blocks.N.`).
`mlp.hook_in` is TransformerLens 3's bridge name for the MLP's input (after its norm), which
mwhanna's transcoders read; in a HookedTransformer it is taken as `ln2.hook_normalized` times the
norm's weight (kind "mlp_input", HookSite.reads)."""
WRITES = {"resid", "attn_out", "mlp_out", "mlp_hidden", "z"}
"""kinds a latent may write: each has a way into the residual stream (`residual_directions`).
A normalized hook has none (LayerNorm is not linear), so an SAE there can only be a transcoder's
input."""
HF_MLP_INPUT = re.compile(r"^model\.layers\.(\d+)\.pre_feedforward_layernorm\.output$")
"""sae_lens' `hf_hook_name` of Gemma Scope 2's transcoders: the MLP's input after its RMSNorm
(weight included), as transformers computes it. sae_lens names that `blocks.N.hook_mlp_in`, which
in HookedTransformer is the residual stream before the norm, so the engine reads the norm's output
instead (kind "mlp_input", HookSite.reads)."""
EMBED = "hook_embed"
"""the token embeddings, before block 0: read and written at "layer" -1."""


@dataclass(frozen=True)
class HookSite:
    """Where the SAE reads the model, where its latents write, and how that maps back into the
    residual stream."""

    name: str
    """the hook the SAE encodes, e.g. blocks.1.hook_resid_pre."""
    layer: int
    """the block that hook is in (-1: hook_embed, before block 0)."""
    kind: str
    """resid | attn_out | mlp_out | mlp_hidden | z | normalized | mlp_input."""
    out_name: str | None = None
    """a transcoder's output hook, where W_dec[i] is added (None: an SAE writes at `name`)."""
    out_layer: int | None = None
    out_kind: str | None = None
    @property
    def reads(self) -> str:
        """The hook the engine captures for the SAE's input: `name`, except for kind "mlp_input"
        (the MLP's input as transformers computes it), where it is `blocks.N.ln2.hook_normalized`,
        multiplied by ln2's weight (HookedSAE._run)."""
        return f"blocks.{self.layer}.ln2.hook_normalized" if self.kind == "mlp_input" else self.name

    @property
    def writes(self) -> str:
        """The hook where a latent's decoder row is added, and where the ablation removes it."""
        return self.out_name or self.name

    @property
    def write_layer(self) -> int:
        return self.layer if self.out_layer is None else self.out_layer

    @property
    def write_kind(self) -> str:
        return self.out_kind or self.kind

    @property
    def is_transcoder(self) -> bool:
        return self.out_name is not None

    @property
    def logit_direction(self) -> str:
        return {"mlp_hidden": "W_dec @ W_out", "z": "W_dec @ W_O"}.get(self.write_kind, "W_dec")


def _kind(name: str, flag: str) -> tuple[int, str]:
    if name == EMBED:
        return -1, "resid"
    match = _BLOCK_HOOK.match(name)
    if not match or match.group(2) not in READS:
        raise UserError(f"{flag} '{name}' is not supported; supported: {EMBED} and "
                        f"{', '.join('blocks.N.' + k for k in READS)}")
    return int(match.group(1)), READS[match.group(2)]


def parse_hook(name: str, out_name: str | None = None) -> HookSite:
    """The site of an SAE reading `name`, or of a transcoder reading `name` and writing
    `out_name`; refused in one line when a hook is unknown or cannot be written through."""
    layer, kind = _kind(name, "hook")
    if out_name is None or out_name == name:
        if kind not in WRITES:
            raise UserError(f"an SAE on '{name}' writes back into a normalized space, which has "
                            "no direction in the residual stream; only a transcoder may read it")
        return HookSite(name=name, layer=layer, kind=kind)
    out_layer, out_kind = _kind(out_name, "output hook")
    if out_kind not in WRITES:
        raise UserError(f"a transcoder writing '{out_name}' is not supported (a normalized hook "
                        "has no direction in the residual stream)")
    if out_layer < layer:
        raise UserError(f"the transcoder writes '{out_name}', before the hook it reads "
                        f"('{name}'); check metadata.hook_name_out in its cfg.json")
    return HookSite(name=name, layer=layer, kind=kind, out_name=out_name, out_layer=out_layer,
                    out_kind=out_kind)


def sae_site(sae: Any) -> HookSite:
    """The SAE's site from its cfg (metadata.hook_name, and hook_name_out for a transcoder),
    refusing architectures that would run as something else."""
    arch = str(sae.cfg.architecture())
    if arch in REFUSED:
        raise UserError(f"the '{arch}' SAE architecture is not supported: {REFUSED[arch]}")
    if arch not in SAE_ARCHITECTURES + TRANSCODER_ARCHITECTURES:
        raise UserError(f"the '{arch}' SAE architecture is not supported; supported: "
                        f"{', '.join(SAE_ARCHITECTURES + TRANSCODER_ARCHITECTURES)}")
    meta = sae.cfg.metadata
    hook = meta.get("hook_name") if meta else None
    if not hook:
        raise UserError("the SAE's cfg.json names no hook (metadata.hook_name); add it there")
    if meta.get("hook_head_index") is not None:
        raise UserError(f"the SAE reads one attention head of '{hook}' (hook_head_index "
                        f"{meta.get('hook_head_index')}), which is not supported")
    out = meta.get("hook_name_out")
    if arch in TRANSCODER_ARCHITECTURES and not out:
        raise UserError(f"the SAE is a {arch} but its cfg.json names no output hook "
                        "(metadata.hook_name_out); add the hook its latents write, e.g. "
                        "blocks.N.hook_mlp_out")
    if arch not in TRANSCODER_ARCHITECTURES and out and out != hook:
        raise UserError(f"the SAE is a {arch} (it writes where it reads) but its cfg.json names "
                        f"an output hook '{out}'; save it as a transcoder")
    site = parse_hook(str(hook), str(out) if out else None)
    if arch in SEQUENTIAL and site.kind == "z":
        raise UserError(f"a {arch} SAE on '{hook}' is not supported: it attends over one vector "
                        "per position, and hook_z holds one per head; use a residual-stream hook")
    return _from_hf_hook(site, meta.get("hf_hook_name"))


def _from_hf_hook(site: HookSite, hf_hook: Any) -> HookSite:
    """The site as sae_lens' `hf_hook_name` says the SAE's activations were recorded, where that
    differs from what its TransformerLens hook name means (HF_MLP_INPUT)."""
    match = HF_MLP_INPUT.match(str(hf_hook or ""))
    if not match:
        return site
    layer = int(match.group(1))
    if site.name != f"blocks.{layer}.hook_mlp_in":
        raise UserError(f"the SAE's cfg.json names hook '{site.name}' but was recorded at "
                        f"'{hf_hook}' (metadata.hf_hook_name); make the two agree")
    return replace(site, kind="mlp_input")


def _width(model: Any, kind: str) -> int:
    cfg = model.cfg
    return {"mlp_hidden": cfg.d_mlp, "z": cfg.n_heads * cfg.d_head}.get(kind, cfg.d_model)


def check_compatible(model: Any, sae: Any, site: HookSite) -> None:
    """Fail fast, before any real work, if the SAE cannot read this model at this site."""
    for name, layer in ((site.reads, site.layer), (site.writes, site.write_layer)):
        if name not in model.hook_dict or layer >= model.cfg.n_layers:
            raise UserError(f"the model has no hook '{name}' (it has {model.cfg.n_layers} "
                            "layers); pick an SAE trained on this model")
    if site.kind == "mlp_input" and not hasattr(model.blocks[site.layer].ln2, "w"):
        raise UserError(f"the SAE reads the MLP's input after its norm at layer {site.layer}, but "
                        "the norm's weight was folded away (fold_ln); its config must not ask "
                        "for fold_ln")
    if sae.cfg.d_in != _width(model, site.kind):
        raise UserError(f"SAE d_in {sae.cfg.d_in} != width {_width(model, site.kind)} of hook "
                        f"'{site.name}'; the SAE was trained on another model or hook")
    d_out = int(getattr(sae.cfg, "d_out", sae.cfg.d_in))
    if d_out != _width(model, site.write_kind):
        raise UserError(f"the transcoder's d_out {d_out} != width "
                        f"{_width(model, site.write_kind)} of hook '{site.writes}'; it was "
                        "trained on another model or hook")
    if sae.cfg.normalize_activations not in ("none", "expected_average_only_in"):
        raise UserError(f"SAE activation normalization '{sae.cfg.normalize_activations}' is not "
                        "supported for ablation; fold it into the weights first")
