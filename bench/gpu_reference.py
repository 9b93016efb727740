"""Reference workload on a GPU (BENCHMARKS.md): Neuronpedia's default dashboard job, timed end to end.

    python bench/gpu_reference.py                      # full size: needs a GPU (an H100: minutes)
    python bench/gpu_reference.py --scale 1/1024       # the same code path on CPU in ~2 minutes
    python bench/gpu_reference.py --shape gemma2-2b --scale 1/16 --no-ablation   # Gemma-2-2B shape
    python bench/gpu_reference.py --shape gemma3-4b        # Gemma 3 4B; also qwen3-30b-a3b (MoE)

The workload: a GPT-2-small-shaped TransformerLens model with random weights (12 layers, d_model
768, 12 heads of 64, d_mlp 3072, d_vocab 50257, n_ctx 1024, gelu_new, LayerNorm; nothing is
downloaded), a random standard (ReLU) sae_lens SAE with 24,576 latents on blocks.8.hook_resid_pre,
and 24,576 sequences x 128 tokens; `--scale` multiplies the sequences and the latents. Every
statistic is computed, ablation included.

Set-up (not timed): the model is saved in feature-browser's model-directory format with a
50,257-entry word-level tokenizer (BOS id 0), the SAE with sae_lens' `save_model`, and the corpus
as a pre-tokenized parquet file (`tokens` column, uniform random ids). The SAE's encoder biases are
calibrated on the model's own activations so that each latent fires on a `--density` fraction of
positions (default 64/24,576, i.e. L0 about 64 at full width), as in trained SAEs; a random SAE
with zero biases would fire on half of all positions, which no real SAE does.

Timed: `generator.run.build.build(BuildConfig(...))` in-process, so that the stage times, the peak GPU
memory (torch.cuda.max_memory_allocated) and the host peak RSS belong to the build alone.

Also printed: the model-FLOP lower bound of the work (forward FLOPs of both passes, the example
re-runs and one from-the-hook re-run per (latent, shown example) for ablation, counted from the
store the build wrote) divided by an H100's peak dense throughput (bf16 and TF32), against the
measured compute time.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FULL = 24_576
CTX = 128
HOOK_LAYER = 8
MODEL_CONFIG: dict[str, Any] = {
    "model_name": "gpt2-small-shaped-random", "n_layers": 12, "d_model": 768, "n_heads": 12,
    "d_head": 64, "d_mlp": 3072, "n_ctx": 1024, "d_vocab": 50257, "act_fn": "gelu_new",
    "normalization_type": "LN", "positional_embedding_type": "standard",
    "default_prepend_bos": True, "seed": 0,
}
GEMMA2_2B_CONFIG: dict[str, Any] = {
    "model_name": "gemma-2-2b-shaped-random", "n_layers": 26, "d_model": 2304, "n_heads": 8,
    "d_head": 256, "n_key_value_heads": 4, "d_mlp": 9216, "gated_mlp": True, "n_ctx": 1024,
    "d_vocab": 256000, "act_fn": "gelu_pytorch_tanh", "normalization_type": "RMS",
    "positional_embedding_type": "rotary", "rotary_dim": 256, "default_prepend_bos": True,
    "seed": 0,
}
GEMMA3_4B_CONFIG: dict[str, Any] = {
    # Gemma 3 4B's language model, as generator/inputs/families.py maps its config.json
    "model_name": "gemma-3-4b-shaped-random", "n_layers": 34, "d_model": 2560, "n_heads": 8,
    "d_head": 256, "n_key_value_heads": 4, "d_mlp": 10240, "gated_mlp": True, "n_ctx": 1024,
    "d_vocab": 262208, "act_fn": "gelu_pytorch_tanh", "normalization_type": "RMS",
    "final_rms": True, "use_normalization_before_and_after": True, "use_qk_norm": True,
    "positional_embedding_type": "rotary", "rotary_dim": 256, "rotary_base": 1_000_000,
    "rotary_base_local": 10_000, "rotary_scaling_factor": 8.0, "use_local_attn": True,
    "window_size": 1024, "attn_types": (["local"] * 5 + ["global"]) * 5 + ["local"] * 4,
    "default_prepend_bos": True, "seed": 0,
}
QWEN3_30B_A3B_8L_CONFIG: dict[str, Any] = {
    # Qwen 3 30B-A3B's layers (128 experts of d_mlp 768, 8 per token), 8 of its 48: the whole
    # model is 61 GB in bfloat16 and the model folder loads in float32, so 8 layers (10 GB) fit
    # one 80 GB GPU beside the build; per-layer figures scale to 48.
    "model_name": "qwen3-30b-a3b-8-layers-random", "n_layers": 8, "d_model": 2048, "n_heads": 32,
    "d_head": 128, "n_key_value_heads": 4, "d_mlp": 768, "gated_mlp": True, "n_ctx": 1024,
    "d_vocab": 151936, "act_fn": "silu", "normalization_type": "RMS", "final_rms": True,
    "use_qk_norm": True, "positional_embedding_type": "rotary", "rotary_dim": 128,
    "rotary_base": 1_000_000, "num_experts": 128, "experts_per_token": 8,
    "norm_topk_prob": True, "default_prepend_bos": False, "seed": 0,
}
# --shape: model config, hook layer (mid-stack), full-size latent count
SHAPES: dict[str, tuple[dict[str, Any], int, int]] = {
    "gpt2-small": (dict(MODEL_CONFIG), HOOK_LAYER, FULL),
    "gemma2-2b": (GEMMA2_2B_CONFIG, 12, 65_536),
    "gemma3-4b": (GEMMA3_4B_CONFIG, 17, 65_536),
    "qwen3-30b-a3b": (QWEN3_30B_A3B_8L_CONFIG, 4, 32_768),
}
# H100 SXM peak dense tensor throughput (NVIDIA datasheet; the H200 has the same compute).
H100_PEAK = {"bf16": 989.4e12, "tf32": 494.7e12}

log = logging.getLogger("bench.gpu")


# ------------------------------------------------------------------------------------------------
# set-up: model, tokenizer, SAE, corpus


def make_tokenizer(d_vocab: int) -> Any:
    """A word-level tokenizer with exactly d_vocab entries: id 0 is <|endoftext|> (BOS), id i is
    't{i}'. The corpus is pre-tokenized, so it only has to satisfy the build's needs: a BOS id and
    a piece for every id (the pages show them)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from generator.inputs.model_folder import SPECIAL_TOKEN

    vocab = {SPECIAL_TOKEN: 0, **{f"t{i}": i for i in range(1, d_vocab)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def make_model(model_dir: Path) -> Any:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from generator.inputs.model_folder import save_model_dir

    torch.manual_seed(MODEL_CONFIG["seed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**MODEL_CONFIG, device="cpu"))
    save_model_dir(model, make_tokenizer(MODEL_CONFIG["d_vocab"]), model_dir, MODEL_CONFIG)
    return model


def make_corpus(path: Path, n_seqs: int, seed: int, doc_len: int = 1000) -> None:
    """Uniform random token ids as pre-tokenized documents, enough to fill n_seqs sequences."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_docs = -(-n_seqs * (CTX - 1) // (doc_len + 1)) + 1
    ids = rng.integers(1, MODEL_CONFIG["d_vocab"], size=(n_docs, doc_len), dtype=np.int32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(ids.reshape(-1)), doc_len)
    pq.write_table(pa.table({"tokens": column.cast(pa.list_(pa.int32()))}), path)


def make_sae(sae_dir: Path, model: Any, d_sae: int, density: float, seed: int) -> float:
    """A random standard SAE on blocks.8.hook_resid_pre whose encoder biases put each latent's
    firing rate at `density` on the model's activations over random tokens. Returns the measured
    L0 on the calibration tokens."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    hook = f"blocks.{HOOK_LAYER}.hook_resid_pre"
    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=MODEL_CONFIG["d_model"], d_sae=d_sae)
    cfg.metadata.hook_name = hook
    sae = StandardSAE(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(1, MODEL_CONFIG["d_vocab"], (16, CTX), generator=gen)
    tokens[:, 0] = 0
    with torch.no_grad():
        resid = model(tokens, stop_at_layer=HOOK_LAYER)[:, 1:].reshape(-1, cfg.d_in)
        sae.b_enc.zero_()
        pre = sae.process_sae_in(resid) @ sae.W_enc
        k = max(1, round(density * len(pre)))
        sae.b_enc.copy_(-pre.kthvalue(len(pre) - k + 1, dim=0).values)  # k-th largest per latent
        l0 = float((sae.encode(resid) > 0).float().sum(1).mean())
    sae.save_model(sae_dir)
    return l0


# ------------------------------------------------------------------------------------------------
# FLOP lower bound


def flops_per_position(n_layers: int, ctx: int, c: dict[str, Any] = MODEL_CONFIG) -> float:
    """Forward FLOPs of `n_layers` transformer blocks for one position (2 per multiply-add):
    Q, K, V, O projections, the MLP, and causal attention over (ctx+1)/2 positions on average."""
    d, inner = c["d_model"], c["n_heads"] * c["d_head"]
    kv = c.get("n_key_value_heads") or c["n_heads"]  # grouped-query attention: fewer K, V heads
    mlp_mats = 3 if c.get("gated_mlp") else 2
    experts = c.get("experts_per_token") or 1  # an MoE block runs that many experts' MLPs
    router = 2 * d * (c.get("num_experts") or 0)
    per_layer = (2 * 2 * d * inner + 2 * 2 * d * kv * c["d_head"]
                 + experts * 2 * mlp_mats * d * c["d_mlp"] + router + 2 * 2 * inner * (ctx + 1) / 2)
    return n_layers * per_layer


def flop_count(store: Path, n_seqs: int, d_sae: int, ablation: bool,
               c: dict[str, Any] = MODEL_CONFIG, hook_layer: int = HOOK_LAYER, ctx: int = CTX,
               bos_id: int = 0, model_passes: int = 1) -> dict[str, float]:
    """Model FLOPs of the work, counted from what the build did (its store). `minimum` counts, for
    ablation, only positions at or after the latent's first activation (earlier positions are
    unchanged by the edit); `executed` counts the blocks after the hook over whole sequences, as
    the engine runs them. Unembedding is counted only where a Δloss is needed, as the engine does.
    For an SAE on blocks.L.hook_resid_pre (the model config `c` as in config.json).
    `model_passes`: corpus passes that ran the model (pass 2 reads pass 1's cached activations
    unless they exceeded the cache budget); the minimum counts one."""
    import pyarrow.parquet as pq

    unembed = 2 * c["d_model"] * c["d_vocab"]
    encode = 2 * c["d_model"] * d_sae
    to_hook = flops_per_position(hook_layer, ctx, c) + encode
    after_hook = flops_per_position(c["n_layers"] - hook_layer, ctx, c)
    ex = pq.read_table(store / "examples.parquet", columns=["seq", "latent", "acts"])
    seqs = pq.read_table(store / "sequences.parquet")
    kept = seqs.column("seq").to_numpy()
    toks = seqs.column("tokens").combine_chunks().flatten().to_numpy().reshape(-1, ctx)
    acts = ex.column("acts").combine_chunks().flatten().to_numpy().reshape(-1, ctx)
    # a (sequence, latent) pair shown twice (top example and interval sample) is computed once
    key = ex.column("seq").to_numpy().astype(np.int64) * d_sae + ex.column("latent").to_numpy()
    _, first_row = np.unique(key, return_index=True)
    ex_seq, acts = ex.column("seq").to_numpy()[first_row], acts[first_row]
    n_pairs, n_uniq = len(ex_seq), len(kept)
    positions = n_seqs * ctx
    out = {"passes": model_passes * positions * to_hook, "model_passes": float(model_passes),
           "examples": n_uniq * ctx * to_hook, "pairs": float(n_pairs),
           "unique_example_seqs": float(n_uniq)}
    if ablation:
        first = np.where((acts > 0).any(1), (acts > 0).argmax(1), ctx)
        target_ok = toks[np.searchsorted(kept, ex_seq)][:, 1:] != bos_id
        needed = (np.arange(ctx - 1)[None, :] >= first[:, None]) & target_ok
        out["clean_rerun"] = n_uniq * ctx * after_hook + float((toks[:, 1:] != bos_id).sum()) * unembed
        out["ablation_executed"] = n_pairs * ctx * after_hook + needed.sum() * unembed
        out["ablation_minimum"] = float(np.clip(ctx - first, 0, None).sum()) * after_hook \
            + needed.sum() * unembed
        out["needed_positions"] = float(needed.sum())
    base = out["passes"] + out["examples"] + out.get("clean_rerun", 0.0)
    out["total_executed"] = base + out.get("ablation_executed", 0.0)
    out["total_minimum"] = base - (model_passes - 1) * positions * to_hook \
        + out.get("ablation_minimum", 0.0)
    return out


# ------------------------------------------------------------------------------------------------


class _CacheOverflow(logging.Handler):
    """Notices the engine saying that pass 2 re-runs the model (activation cache over budget)."""

    seen = False

    def emit(self, record: logging.LogRecord) -> None:
        if "activation cache over" in record.getMessage():
            self.seen = True


def tree_bytes(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), sum(p.suffix == ".html" for p in files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small",
                   help="model shape: GPT-2 small (24,576 latents on blocks.8), Gemma-2-2B "
                        "(d_model 2,304, d_vocab 256,000, 65,536 latents on blocks.12), Gemma 3 "
                        "4B (65,536 on blocks.17) or 8 of Qwen 3 30B-A3B's MoE layers (32,768 "
                        "on blocks.4)")
    p.add_argument("--scale", type=Fraction, default=Fraction(1),
                   help="fraction of the 24,576 sequences and of the shape's latents, e.g. 1/64")
    p.add_argument("--device", default="auto", help="torch device (default: cuda if available)")
    p.add_argument("--density", type=float, default=0.0,
                   help="firing rate each random latent is calibrated to (default 64 / the "
                        "shape's full latent count: L0 about 64 at full width)")
    p.add_argument("--no-ablation", action="store_true", help="skip ablation (to time it apart)")
    p.add_argument("--batch-size", type=int, default=0, help="sequences per forward (0: auto)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep model, SAE, corpus, store and site here (default: a temp dir)")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "out" / "gpu_reference.json")
    p.add_argument("--progress", action="store_true", help="show the build's progress bars")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    import torch

    from generator.config import BuildConfig
    from generator.inputs.models import pick_device
    from generator.run.build import build

    global HOOK_LAYER
    config, HOOK_LAYER, full_latents = SHAPES[args.shape]
    MODEL_CONFIG.clear()  # the set-up helpers read the module's model config
    MODEL_CONFIG.update(config)
    device = pick_device(args.device)
    n_seqs = max(1, round(FULL * args.scale))
    d_sae = max(8, round(full_latents * args.scale))
    density = args.density or 64 / full_latents  # L0 ~ 64 at full width
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fb-gpu-ref-")
        work = Path(tmp.name)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    gpu_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "none"
    log.info("device %s (%s); %d sequences x %d tokens, d_sae %d, torch threads %d", device,
             gpu_name, n_seqs, CTX, d_sae, torch.get_num_threads())

    start = time.perf_counter()
    model = make_model(work / "model")
    make_corpus(work / "corpus.parquet", n_seqs, seed=0)
    calib_l0 = make_sae(work / "sae", model, d_sae, density, seed=0)
    del model
    setup_s = time.perf_counter() - start
    log.info("set-up (not timed below): %.1f s; SAE L0 on calibration tokens %.1f", setup_s,
             calib_l0)

    cfg = BuildConfig(model=str(work / "model"), sae=str(work / "sae"),
                      corpus=str(work / "corpus.parquet"), out=work / "site",
                      store=work / "store", n_seqs=n_seqs, ctx=CTX, device=device,
                      batch_size=args.batch_size, ablation=not args.no_ablation,
                      quiet=not args.progress)
    overflow = _CacheOverflow()
    logging.getLogger("generator").addHandler(overflow)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    times = build(cfg)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    peak_gpu = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # includes set-up
    site_bytes, pages = tree_bytes(work / "site")
    store_bytes, _ = tree_bytes(work / "store")
    meta = json.loads((work / "store" / "meta.json").read_text())

    flops = flop_count(work / "store", n_seqs, d_sae, not args.no_ablation, c=MODEL_CONFIG,
                       hook_layer=HOOK_LAYER, model_passes=2 if overflow.seen else 1)
    compute_stages = ("pass1", "pass2", "examples")
    compute_s = sum(times.seconds.get(k, 0.0) for k in compute_stages)
    n_tokens = n_seqs * CTX
    bound = {f"h100_{kind}_s": flops["total_minimum"] / peak for kind, peak in H100_PEAK.items()}
    result = {
        "device": device, "gpu": gpu_name, "scale": str(args.scale), "n_seqs": n_seqs, "ctx": CTX,
        "d_sae": d_sae, "hook": f"blocks.{HOOK_LAYER}.hook_resid_pre", "model": MODEL_CONFIG,
        "ablation": not args.no_ablation, "l0": meta["l0"], "setup_s": setup_s,
        "build_wall_s": wall, "stages_s": times.seconds, "compute_s": compute_s,
        "tokens_per_s": n_tokens / wall, "peak_gpu_mem_bytes": peak_gpu,
        "peak_host_rss_bytes": peak_rss, "site_bytes": site_bytes, "pages": pages,
        "store_bytes": store_bytes, "flops": flops, "lower_bound_s": bound,
        "achieved_flops_per_s": flops["total_executed"] / compute_s if compute_s else None,
        "torch": torch.__version__,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2, default=str) + "\n")

    print(f"\nreference workload at scale {args.scale}: {n_seqs:,} seqs x {CTX} tokens, "
          f"d_sae {d_sae:,}, on {device} ({gpu_name}); L0 {meta['l0']:.1f}")
    for name, sec in times.seconds.items():
        print(f"  {name:<10} {sec:9.1f} s")
    print(f"  {'total':<10} {wall:9.1f} s   ({n_tokens / wall:,.0f} tokens/s)")
    print(f"  peak GPU memory {peak_gpu / 2**30:.1f} GiB" if peak_gpu is not None else
          "  peak GPU memory: n/a (CPU run)")
    print(f"  peak host RSS {peak_rss / 2**30:.2f} GiB (includes set-up)")
    print(f"  site {site_bytes / 1e6:,.1f} MB in {pages:,} pages; store {store_bytes / 1e6:,.1f} MB")
    print(f"  model FLOPs: {int(flops['model_passes'])} corpus pass(es) {flops['passes']:.3g}, "
          f"example re-runs {flops['examples']:.3g}"
          + (f", clean re-runs {flops['clean_rerun']:.3g}, ablation {flops['ablation_executed']:.3g}"
             f" executed / {flops['ablation_minimum']:.3g} minimum over {int(flops['pairs']):,} "
             f"(latent, example) pairs" if "clean_rerun" in flops else ""))
    print(f"  total {flops['total_executed']:.3g} executed, {flops['total_minimum']:.3g} minimum; "
          f"achieved {result['achieved_flops_per_s'] / 1e12:.3f} TFLOP/s over the compute stages "
          f"({compute_s:.1f} s)")
    print(f"  H100 lower bound for the minimum: {bound['h100_bf16_s']:.2f} s at bf16 peak, "
          f"{bound['h100_tf32_s']:.2f} s at TF32 peak; measured compute {compute_s:.1f} s "
          f"(x{compute_s / bound['h100_tf32_s']:.0f} the TF32 bound)")
    print(f"results: {args.results}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
