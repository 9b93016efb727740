"""Run SAEDashboard (sae-dashboard 0.8.0) on a saved token array, for bench/compare_saedashboard.py.

Executed by bench/.sd-venv/bin/python (its own venv: SAEDashboard pins transformer_lens 2.x, which
cannot share an environment with this project's transformer_lens 3.9). The project is installed
there without dependencies only so that `model_folder.load_model_dir` can rebuild the model from
its directory: the token array is produced by the orchestrator and read here unchanged.

    bench/.sd-venv/bin/python bench/sd_runner.py --tokens bench/out/tokens.npy \
        --model-dir generator/demo/artifacts/model --sae-dir generator/demo/artifacts/sae \
        --out bench/out/sd/vis.html

Prints tqdm progress to stderr (SaeVisConfig verbose=True) and writes a JSON of stage timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path


def load_model(path: Path):
    """`model_folder.load_model_dir`, tolerant of transformer_lens 2.x: the directory is written
    under transformer_lens 3.9, whose state dict holds the attention-mask buffers in another shape.
    Buffers that do not fit are left as the freshly built model has them (they are derived from
    n_ctx, not learned); every parameter must load."""
    import torch
    from safetensors.torch import load_file

    from generator.inputs.model_folder import build_model, load_tokenizer

    config = json.loads((path / "config.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(config, load_tokenizer(path), "cpu")
    own = model.state_dict()
    saved = load_file(str(path / "model.safetensors"), device="cpu")
    kept = {k: (v.float() if v.is_floating_point() else v) for k, v in saved.items()
            if k in own and own[k].shape == v.shape}
    params = {name for name, _ in model.named_parameters()}
    missing = params - kept.keys()
    if missing:
        raise RuntimeError(f"parameters not loaded from {path}: {sorted(missing)[:5]}")
    model.load_state_dict(kept, strict=False)
    with torch.no_grad():
        assert all(torch.equal(own[k], kept[k]) for k in params)
    return model.eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=Path, required=True, help=".npy int array [n_seqs, ctx]")
    p.add_argument("--model-dir", type=Path, required=True, help="feature-browser model directory")
    p.add_argument("--sae-dir", type=Path, required=True, help="sae_lens SAE directory")
    p.add_argument("--out", type=Path, required=True, help="output HTML file")
    p.add_argument("--timings", type=Path, default=None, help="JSON of stage seconds (default: "
                   "next to --out)")
    p.add_argument("--feature-batch", type=int, default=256,
                   help="SaeVisConfig.minibatch_size_features (SAEDashboard's default: 256)")
    p.add_argument("--token-batch", type=int, default=64,
                   help="SaeVisConfig.minibatch_size_tokens (SAEDashboard's default: 64)")
    p.add_argument("--separate-files", action="store_true",
                   help="one HTML file per feature instead of SAEDashboard's default single file")
    p.add_argument("--bos-id", type=int, default=None,
                   help="token id excluded from statistics (default: the tokenizer's BOS)")
    args = p.parse_args()
    timings_path = args.timings or args.out.with_suffix(".timings.json")
    times: dict[str, float] = {}

    start = time.perf_counter()
    import numpy as np
    import torch
    from sae_dashboard.data_writing_fns import save_feature_centric_vis
    from sae_dashboard.sae_vis_data import SaeVisConfig
    from sae_dashboard.sae_vis_runner import SaeVisRunner
    from sae_lens import SAE

    model = load_model(args.model_dir)
    sae = SAE.load_from_disk(str(args.sae_dir), device="cpu")
    tokens = torch.from_numpy(np.load(args.tokens).astype(np.int64))
    bos = args.bos_id if args.bos_id is not None else model.tokenizer.bos_token_id
    d_sae = int(sae.cfg.d_sae)
    times["load"] = time.perf_counter() - start
    print(f"sd_runner: {tokens.shape[0]} x {tokens.shape[1]} tokens, d_sae {d_sae}, hook "
          f"{sae.cfg.metadata.hook_name}, torch threads {torch.get_num_threads()}",
          file=sys.stderr, flush=True)

    cfg = SaeVisConfig(
        hook_point=sae.cfg.metadata.hook_name,
        features=list(range(d_sae)),
        minibatch_size_features=args.feature_batch,
        minibatch_size_tokens=args.token_batch,
        device="cpu",
        dtype="float32",
        ignore_tokens={int(bos)},  # the same exclusion our build applies (BOS positions)
        verbose=True,
        seed=0,
    )
    start = time.perf_counter()
    data = SaeVisRunner(cfg).run(encoder=sae, model=model, tokens=tokens)
    times["run"] = time.perf_counter() - start

    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_feature_centric_vis(sae_vis_data=data, filename=args.out,
                             separate_files=args.separate_files)
    times["save"] = time.perf_counter() - start

    files = ([f for f in args.out.parent.glob(f"{args.out.stem}_feature_*{args.out.suffix}")]
             if args.separate_files else [args.out])
    versions = {}
    for name in ("sae-dashboard", "torch", "transformer-lens", "sae-lens", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    result = {
        "seconds": times, "n_seqs": int(tokens.shape[0]), "ctx": int(tokens.shape[1]),
        "d_sae": d_sae, "feature_batch": args.feature_batch, "token_batch": args.token_batch,
        "separate_files": args.separate_files, "n_files": len(files),
        "bytes": sum(f.stat().st_size for f in files), "versions": versions,
        "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
    }
    timings_path.write_text(json.dumps(result, indent=2) + "\n")
    print("sd_runner: done " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()),
          file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
