"""Inputs: load the language model and the SAE, and check they fit together before any real work.

Every check here fails with one UserError line that names the problem and the fix, before any
compute: names neither on the hub nor in the local cache, missing paths, unknown hooks, SAE
width != hook width.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from generator.errors import UserError
from generator.inputs.paths import check_input_path

log = logging.getLogger(__name__)

def looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or spec.endswith((".json", ".safetensors"))


def load_model(spec: str | None, device: str, options: dict[str, Any] | None = None,
               dtype: str = "float32") -> Any:
    """A HookedTransformer from the embedded demo (spec None), a model folder (feature-browser's
    own format, or a transformers checkpoint), or a TransformerLens name (hub or local cache).
    `options`: the SAE's model_from_pretrained_kwargs (weight processing it was trained with);
    `dtype`: the weights' (--dtype)."""
    from generator.demo import DEMO_MODEL_DIR
    from generator.inputs import hf
    from generator.inputs.model_folder import load_model_dir

    options = options or {}
    if spec is None:
        return _cast(load_model_dir(DEMO_MODEL_DIR, device=device), dtype)
    path = Path(spec).expanduser()
    check_input_path("--model", path, "pass a model folder or a TransformerLens name")
    if path.is_file():
        raise UserError(f"--model {path} is a file; pass the folder that holds it (a "
                        "save_pretrained folder with config.json, or a folder saved by "
                        "feature-browser) or a TransformerLens name")
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model directory {path} has no config.json; pass a transformers "
                            "checkpoint folder (save_pretrained), a folder saved by "
                            "feature-browser, or a TransformerLens name")
        config = _read_json(path / "config.json", "model config",
                            "save the model again with save_pretrained")
        _check_tokenizer_files(path)
        if hf.is_checkpoint(config):
            return hf.load_checkpoint(path, device, options, dtype=dtype)
        return _cast(_load_model_dir(path, device), dtype)
    if looks_like_path(spec):
        raise UserError(f"model directory {spec} does not exist; check the --model path")
    return hf.load_named_model(spec, device, options, dtype)


def _cast(model: Any, dtype: str) -> Any:
    """A model folder (float32 when loaded) in --dtype; TransformerLens reads cfg.dtype too."""
    import torch

    if dtype == "float32":
        return model
    model.cfg.dtype = getattr(torch, dtype)
    return model.to(model.cfg.dtype)


def weight_processing(model: Any) -> dict[str, bool]:
    """The processing flags the model's weights went through: set by hf.load_checkpoint; a
    model folder (the demo's format) or a model built in memory is used as it is: none."""
    from generator.inputs.hf import PROCESSING

    return dict(getattr(model, "weight_processing", None) or dict.fromkeys(PROCESSING, False))


def model_options(sae: Any) -> dict[str, Any]:
    """How the SAE's model was loaded (sae_lens' model_from_pretrained_kwargs), e.g. without
    centring the writing weights: the activations the SAE reads depend on it."""
    meta = sae.cfg.metadata
    return dict(getattr(meta, "model_from_pretrained_kwargs", None) or {}) if meta else {}


SAE_WEIGHTS = "sae_weights.safetensors"


def _read_json(file: Path, what: str, fix: str) -> dict[str, Any]:
    import json

    try:
        raw = json.loads(file.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"{what} {file} is not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{what} {file} is not valid JSON (line {err.lineno}, column {err.colno}: "
                        f"{err.msg}); {fix}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{what} {file} is not a JSON object; {fix}")
    return raw


def _tensor_shapes(file: Path, what: str, fix: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes from a safetensors header, without loading the tensors: a truncated or
    foreign file fails here in milliseconds with one line."""
    from safetensors import safe_open

    if not file.is_file():
        raise UserError(f"{what} {file} is missing; {fix}")
    try:
        with safe_open(str(file), framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as err:  # SafetensorError, OSError: the file itself is the problem
        raise UserError(f"{what} {file} is damaged or truncated ({str(err)[:80]}); {fix}") from None
    size = file.stat().st_size
    # The header only promises the data: a file cut short after its header still opens.
    needed = _data_end(file)
    if needed is not None and size < needed:
        raise UserError(f"{what} {file} is truncated ({size} of {needed} bytes); {fix}")
    return shapes


def _data_end(file: Path) -> int | None:
    """Bytes a safetensors file must have: 8 + header length + the largest data offset."""
    import json
    import struct

    with file.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        (n,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return None
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    return 8 + n + max(ends, default=0)


def check_sae_dir(path: Path) -> None:
    """cfg.json and the weights agree with each other and are complete, before sae_lens (whose
    errors for these cases are tracebacks) sees them."""
    fix = "save the SAE again with sae_lens (sae.save_model) or download it again"
    cfg = _read_json(path / "cfg.json", "SAE config", fix)
    missing = [k for k in ("d_in", "d_sae") if not isinstance(cfg.get(k), int)]
    if missing:
        raise UserError(f"SAE config {path / 'cfg.json'} lacks integer {', '.join(missing)}; add "
                        f"{' and '.join(missing)} (the SAE's input width and latent count)")
    shapes = _tensor_shapes(path / SAE_WEIGHTS, "SAE weights", fix)
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    expect = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in)}
    for name, shape in expect.items():
        if name not in shapes:
            raise UserError(f"SAE weights {path / SAE_WEIGHTS} hold no {name}; is this a sae_lens "
                            f"SAE? {fix}")
        if shapes[name] != shape:
            got = "x".join(map(str, shapes[name]))
            raise UserError(f"SAE config says d_in {d_in}, d_sae {d_sae} but {name} in "
                            f"{SAE_WEIGHTS} is {got}; cfg.json and the weights belong to "
                            "different SAEs: put the matching cfg.json beside them")


def check_sae_finite(sae: Any) -> None:
    """Refuse NaN / inf anywhere in the SAE's weights, naming the latents: a single bad decoder
    row otherwise builds "successfully", with NaN logit effects and the bad latent as everyone's
    nearest neighbour."""
    import torch

    d_sae = int(sae.cfg.d_sae)
    latents: set[int] = set()
    tensors: list[str] = []
    everywhere: list[str] = []
    for name, param in sae.named_parameters():
        bad = ~torch.isfinite(param.detach())
        if not bool(bad.any()):
            continue
        tensors.append(name)
        # which axis is the latent axis: W_dec is (d_sae, d_in), the rest keep it last
        axes = [0] if name.startswith("W_dec") else [
            i for i in range(param.dim() - 1, -1, -1) if param.shape[i] == d_sae][:1]
        if not axes:  # b_dec and the like: every latent reads through it
            everywhere.append(name)
            continue
        axis = axes[0]
        others = tuple(i for i in range(param.dim()) if i != axis)
        hit = bad.any(dim=others) if others else bad
        latents.update(int(i) for i in torch.nonzero(hit).flatten().tolist())
    if not tensors:
        return
    if everywhere:
        raise UserError(f"the SAE's {', '.join(everywhere)} holds NaN/inf, which reaches every "
                        "latent; fix the SAE's weights (retrain or re-export it)")
    ids = sorted(latents)
    shown = ", ".join(map(str, ids[:10])) + (f" (+{len(ids) - 10} more)" if len(ids) > 10 else "")
    raise UserError(f"the SAE's weights hold NaN/inf for latent{'s' if len(ids) > 1 else ''} "
                    f"{shown} (in {', '.join(tensors)}); fix or zero those latents' weights")


def _check_tokenizer_files(path: Path) -> None:
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                                  "vocab.json", "tokenizer.model")):
        raise UserError(f"model directory {path} has no tokenizer (tokenizer.json); save it there "
                        f"with tokenizer.save_pretrained('{path}')")


def _load_model_dir(path: Path, device: str) -> Any:
    """A model directory saved by feature-browser (model_folder.save_model_dir), checked file by file so
    that each problem is one line."""
    from generator.inputs.model_folder import load_model_dir

    fix = "save the model again (see generator/inputs/model_folder.py save_model_dir)"
    config = _read_json(path / "config.json", "model config", fix)
    shapes = _tensor_shapes(path / "model.safetensors", "model weights", fix)
    if "embed.W_E" not in shapes:
        raise UserError(f"model weights {path / 'model.safetensors'} hold no embed.W_E; {fix}")
    try:
        return load_model_dir(path, device=device)
    except Exception as err:  # incomplete config.json, weights of another shape
        raise UserError(f"model directory {path} could not be loaded ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:120] if str(err) else ''}); check its "
                        f"config.json ({', '.join(sorted(config)[:6])}, ...) and {fix}") from None


def load_sae(spec: str | None, device: str) -> Any:
    """A sae_lens SAE from a local directory, the embedded demo (None) or 'release/id' (hub)."""
    from sae_lens import SAE

    from generator.demo import DEMO_SAE_DIR
    from generator.inputs import hf

    path = DEMO_SAE_DIR if spec is None else Path(spec).expanduser()
    check_input_path("--sae", path, "pass a sae_lens SAE folder or RELEASE/ID")
    if path.is_file():
        raise UserError(f"--sae {path} is a file; pass the folder that holds cfg.json and "
                        "sae_weights.safetensors (sae_lens' save_model), or RELEASE/ID")
    if path.exists():
        if not (path / "cfg.json").is_file():
            raise UserError(f"SAE directory {path} has no cfg.json; pass a sae_lens directory "
                            "with cfg.json + sae_weights.safetensors")
        check_sae_dir(path)
        try:
            sae = SAE.load_from_disk(path, device=device)
        except Exception as err:  # whatever sae_lens rejects in cfg.json: one line, no traceback
            raise UserError(f"sae_lens cannot load the SAE in {path} ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:120] if str(err) else ''}); check its "
                            "cfg.json (architecture, metadata.hook_name, ...)") from None
        return prepared(sae)
    assert spec is not None
    if looks_like_path(spec):
        raise UserError(f"SAE directory {spec} does not exist; check the --sae path")
    if "/" not in spec:
        raise UserError(f"SAE '{spec}' is neither a local directory nor 'release/id'; "
                        "pass --sae PATH or --sae RELEASE/ID")
    return prepared(hf.load_named_sae(spec, device))


def prepared(sae: Any) -> Any:
    """The loaded SAE as the engine takes it: finite, its scalar rescale folded."""
    check_sae_finite(sae)
    return fold_scalar_rescale(sae)


def fold_scalar_rescale(sae: Any) -> Any:
    """A temporal SAE's `constant_scalar_rescale` (its input times a factor, its output divided
    by it; the temporal converter writes it) folded into its weights, as sae_lens'
    fold_activation_norm_scaling_factor does for other SAEs: W_enc x f, W_dec and b_dec / f.
    The codes and the output from the raw activations stay the same (the temporal attention's
    projections are scale-free), and W_dec[i] is then what latent i adds at the hook, which the
    ablation and the logit effects need. Tied weights are untied first: the encoder is scaled,
    the decoder divided."""
    import torch

    if sae.cfg.normalize_activations != "constant_scalar_rescale":
        return sae
    factor = float(sae.cfg.activation_normalization_factor)
    if getattr(sae.cfg, "tied_weights", False) and not sae.cfg.apply_b_dec_to_input:
        raise UserError("the SAE ties its weights, rescales its input and adds no b_dec: its "
                        "rescale cannot be folded; save it with untied weights")
    with torch.no_grad():
        if getattr(sae.cfg, "tied_weights", False):
            sae.W_enc = torch.nn.Parameter(sae.W_dec.detach().T.clone())
            sae.cfg.tied_weights = False
        sae.W_enc.mul_(factor)
        sae.W_dec.div_(factor)
        sae.b_dec.div_(factor)
    sae.cfg.normalize_activations = "none"
    sae._setup_activation_normalization()
    return sae


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested} asked for, but no CUDA GPU is visible; "
                        "use --device cpu")
    return requested


def separator_id(tokenizer: Any) -> int | None:
    """The token that starts every sequence and separates documents: BOS, or where the tokenizer
    has none (Qwen's), EOS, which is what such models saw between documents in training."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return None


def ln_folded(model: Any) -> bool:
    return model.cfg.normalization_type in ("LNPre", "RMSPre")
