"""Real SAE widths on one machine: stage times, peak memory and site size (a benchmark, not a test).

    python bench/scale.py                         # every configuration below, one child each
    python bench/scale.py --only demo-131k        # one of them
    python bench/scale.py --n-seqs 32              # fewer sequences, to try the script

Configurations (random weights are fine for time and memory; nothing is downloaded):
- demo-16k / demo-65k / demo-131k / demo-262k: the embedded demo model (2 layers, d_model 128,
  d_vocab 4,096) and its corpus, with a random sae_lens TopK SAE (k = 64) of 16,384 / 65,536 /
  131,072 / 262,144 latents on
  blocks.1.hook_resid_pre, 256 sequences x 128 tokens, ablation off.
- gpt2-24k: a GPT-2-small-shaped random model (12 layers, d_model 768, d_vocab 50,257; see
  bench/gpu_reference.py) with a random standard SAE of 24,576 latents on blocks.8.hook_resid_pre
  calibrated to L0 ~ 64, on random tokens, 64 sequences x 128 tokens, ablation off (on CPU the
  ablation of 24,576 latents' examples through a 50k vocabulary is GPU work: bench/gpu_reference.py).

Each configuration runs in a fresh child process, so its peak RSS is its own. The child runs the
build's stages (generator.run.pipeline.compute, write_store, render_site) with a StageTimes that samples the
process RSS every 10 ms and records each stage's peak, plus the time spent inside the SAE's encode
and inside the pass-1 statistics update (to compare the cost per active entry across widths).
Printed per configuration: per stage seconds, peak RSS (and peak GPU memory on a GPU); site bytes,
KB per latent and file count. Results also go to bench/out/scale.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS: dict[str, dict[str, Any]] = {
    "demo-16k": {"model": "demo", "d_sae": 16_384, "n_seqs": 256},
    "demo-65k": {"model": "demo", "d_sae": 65_536, "n_seqs": 256},
    "demo-131k": {"model": "demo", "d_sae": 131_072, "n_seqs": 256},
    "demo-262k": {"model": "demo", "d_sae": 262_144, "n_seqs": 256},
    "gpt2-24k": {"model": "gpt2", "d_sae": 24_576, "n_seqs": 64},
}
TOPK = 64
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@dataclass
class Probe:
    """Samples RSS in a thread; `peak_since(t)` is the highest sample since mark t."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Probe:
        def loop() -> None:
            while not self.stop.is_set():
                self.samples.append((time.perf_counter(), rss_bytes()))
                time.sleep(0.01)

        threading.Thread(target=loop, daemon=True).start()
        return self

    def peak_between(self, lo: float, hi: float) -> int:
        inside = [r for t, r in self.samples if lo <= t <= hi]
        return max(inside, default=rss_bytes())


def timed_method(cls: Any, name: str, totals: dict[str, float]) -> None:
    """Wrap cls.name so the seconds spent in it add up in totals[name]."""
    inner = getattr(cls, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - start

    setattr(cls, name, wrapper)


# ------------------------------------------------------------------------------------------------
# child: one configuration


def make_topk_sae(path: Path, d_in: int, d_sae: int, hook: str, seed: int) -> None:
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    cfg = TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=TOPK)
    cfg.metadata.hook_name = hook
    sae = TopKSAE(cfg)
    with torch.no_grad():  # sae_lens initialises W_enc = W_dec^T; keep unit-norm decoder rows
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, d_in), dim=1))
        sae.W_enc.copy_(sae.W_dec.T)
    sae.save_model(path)


def child(name: str, n_seqs: int, device: str, out: Path) -> dict[str, Any]:
    import torch

    from bench import gpu_reference as ref
    from generator.compute.activations import HookedSAE
    from generator.compute.checkpoint import remove as remove_checkpoint
    from generator.compute.statistics import Pass1State
    from generator.config import BuildConfig
    from generator.run.pipeline import StageTimes, compute
    from generator.site.render import render_site
    from generator.store.io import write_store

    spec = CONFIGS[name]
    tmp = tempfile.TemporaryDirectory(prefix=f"fb-scale-{name}-")  # model + SAE weights: GBs
    work = Path(tmp.name)
    start = time.perf_counter()
    if spec["model"] == "demo":
        make_topk_sae(work / "sae", 128, spec["d_sae"], "blocks.1.hook_resid_pre", seed=0)
        model, corpus = None, None
    else:
        m = ref.make_model(work / "model")
        ref.make_corpus(work / "corpus.parquet", n_seqs, seed=0)
        ref.make_sae(work / "sae", m, spec["d_sae"], 64 / spec["d_sae"], seed=0)
        del m
        model, corpus = str(work / "model"), str(work / "corpus.parquet")
    setup_s = time.perf_counter() - start
    cfg = BuildConfig(model=model, sae=str(work / "sae"), corpus=corpus, out=out / "site",
                      store=out / "store", n_seqs=n_seqs, ctx=128, device=device, ablation=False,
                      quiet=True)
    totals: dict[str, float] = {}
    timed_method(HookedSAE, "encode", totals)
    timed_method(Pass1State, "update", totals)
    probe = Probe().start()
    cuda = device.startswith("cuda")
    peaks: dict[str, int] = {}
    gpu_peaks: dict[str, int] = {}

    class ProbedTimes(StageTimes):
        def run(self, stage: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            lo = time.perf_counter()
            result = super().run(stage, fn, *args, **kwargs)
            if cuda:
                torch.cuda.synchronize()
                gpu_peaks[stage] = torch.cuda.max_memory_allocated()
            peaks[stage] = probe.peak_between(lo, time.perf_counter())
            return result

    times = ProbedTimes()
    # compute() checkpoints beside the store as a build does: a run stopped earlier must not
    # be resumed (its stages would be skipped and their times lost), and this one's goes too
    remove_checkpoint(cfg.store)
    start = time.perf_counter()
    data = compute(cfg, times)
    times.run("store", write_store, data, cfg.store)
    times.run("render", render_site, data, cfg.out, explanations=None, quiet=True)
    wall = time.perf_counter() - start
    remove_checkpoint(cfg.store)
    probe.stop.set()
    tmp.cleanup()
    files = [p for p in cfg.out.rglob("*") if p.is_file()]
    site_bytes = sum(p.stat().st_size for p in files)
    nnz = int(data.latents.n_active.sum())
    return {
        "config": name, "d_sae": data.meta.d_sae, "d_vocab": data.meta.d_vocab,
        "d_model": data.meta.d_model, "n_seqs": n_seqs, "n_tokens": data.meta.n_tokens,
        "l0": data.meta.l0, "active_entries": nnz, "device": device, "setup_s": setup_s,
        "wall_s": wall, "stages_s": times.seconds, "stage_peak_rss": peaks,
        "stage_peak_gpu": gpu_peaks, "peak_rss": max(peaks.values()),
        "encode_s": totals.get("encode", 0.0), "pass1_update_s": totals.get("update", 0.0),
        "site_bytes": site_bytes, "site_files": len(files),
        "kb_per_latent": site_bytes / 1024 / data.meta.d_sae,
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------------------
# parent: run children, print the table


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def report(r: dict[str, Any]) -> None:
    print(f"\n{r['config']}: d_sae {r['d_sae']:,}, d_vocab {r['d_vocab']:,}, d_model {r['d_model']}, "
          f"{r['n_seqs']} seqs ({r['n_tokens']:,} tokens), L0 {r['l0']:.1f}, on {r['device']}")
    gpu = bool(r["stage_peak_gpu"])
    print(f"  {'stage':<12}{'s':>9}{'peak RSS GiB':>14}" + (f"{'peak GPU GiB':>14}" if gpu else ""))
    for stage, sec in r["stages_s"].items():
        line = f"  {stage:<12}{sec:9.1f}{gib(r['stage_peak_rss'][stage]):>14}"
        if gpu:
            line += f"{gib(r['stage_peak_gpu'][stage]):>14}"
        print(line)
    print(f"  {'total':<12}{r['wall_s']:9.1f}{gib(r['peak_rss']):>14}")
    per_entry = r["pass1_update_s"] / max(r["active_entries"], 1) * 1e6
    print(f"  pass 1: SAE encode {r['encode_s']:.1f} s, statistics update {r['pass1_update_s']:.1f} s "
          f"= {per_entry:.2f} us per active entry ({r['active_entries']:,} entries)")
    print(f"  site {r['site_bytes'] / 1e6:,.1f} MB, {r['kb_per_latent']:.1f} KB per latent, "
          f"{r['site_files']:,} files")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--only", action="append", choices=sorted(CONFIGS), help="run only these")
    p.add_argument("--n-seqs", type=int, default=0, help="override every configuration's sequences")
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "scale")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "out" / "scale.json")
    args = p.parse_args(argv)
    if args.child:
        # stage times to stderr as they finish (the parent shows them live)
        logging.basicConfig(level=logging.WARNING, format="  %(message)s")
        logging.getLogger("generator.run.pipeline").setLevel(logging.INFO)
        n = args.n_seqs or CONFIGS[args.child]["n_seqs"]
        print("RESULT " + json.dumps(child(args.child, n, args.device, args.out / args.child)))
        return 0
    results = []
    for name in args.only or list(CONFIGS):
        cmd = [sys.executable, __file__, "--child", name, "--device", args.device,
               "--out", str(args.out), "--n-seqs", str(args.n_seqs)]
        print(f"{name} ...", flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"\n{name}: FAILED (exit {proc.returncode})")
            continue
        results.append(json.loads(lines[-1][7:]))
        report(results[-1])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    if len(results) > 1:
        base = results[0]
        base_cost = base["pass1_update_s"] / max(base["active_entries"], 1)
        print("\npass-1 statistics update, cost per active entry relative to "
              f"{base['config']}: " + ", ".join(
                  f"{r['config']} x{r['pass1_update_s'] / max(r['active_entries'], 1) / base_cost:.2f}"
                  for r in results[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
