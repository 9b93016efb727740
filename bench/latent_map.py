"""What the latent map (generator/compute/latent_map.py) costs at real SAE widths: UMAP of random decoder
rows, time and peak memory, each size in a fresh process (so each pays the numba JIT, as a build
does, and the peak is its own).

    .venv/bin/python bench/latent_map.py                      # 16,384 / 65,536 / 131,072 x 768
    .venv/bin/python bench/latent_map.py --sizes 4096 --d 2304 --again

Prints one line per size: seconds of the decoder-cosine neighbours (torch, blocked: what the
build computes anyway for the latent pages; `--cache DIR` keeps them for the next run), wall and
CPU seconds of the UMAP call (its JIT included; UMAP runs on one thread, so on a busy machine
its CPU seconds are the figure to read), the same for a second call in the same process (no JIT)
and whether it gave the same bytes, and the peak resident memory of the process, before UMAP
and in all (with `--cache`, their difference is UMAP's own memory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(n: int, d: int, again: bool, cache: Path | None) -> dict[str, object]:
    import numpy as np
    import torch

    from generator.compute.latent_map import N_NEIGHBOURS, latent_map
    from generator.compute.summaries import cosine_neighbours

    w = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    saved = cache / f"knn-{n}x{d}.npz" if cache else None
    start = time.perf_counter()
    if saved and saved.is_file():
        with np.load(saved) as f:
            ids, sims = f["ids"], f["sims"]
    else:
        ids, sims = cosine_neighbours(torch.from_numpy(w), N_NEIGHBOURS - 1)
        if saved:
            saved.parent.mkdir(parents=True, exist_ok=True)
            np.savez(saved, ids=ids, sims=sims)
    knn = time.perf_counter() - start
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, cpu = time.perf_counter(), time.process_time()
    coords = latent_map(w, ids, sims, seed=0)
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    out: dict[str, object] = {"n": n, "d": d, "knn_s": round(knn, 1), "umap_s": round(first, 1),
                              "umap_cpu_s": round(first_cpu, 1),
                              "finite": bool(np.isfinite(coords).all()),
                              "sha": hashlib.sha256(coords.tobytes()).hexdigest()[:12]}
    if again:
        start, cpu = time.perf_counter(), time.process_time()
        same = latent_map(w, ids, sims, seed=0)
        out["umap_again_s"] = round(time.perf_counter() - start, 1)
        out["umap_again_cpu_s"] = round(time.process_time() - cpu, 1)
        out["same_bytes"] = same.tobytes() == coords.tobytes()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["peak_before_umap_mb"] = round(before)  # with --cache: imports, the decoder, the knn
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536, 131072])
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--again", action="store_true", help="a second call: time, same bytes")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the neighbours here (knn-NxD.npz) and reuse them")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.sizes[0], args.d, args.again, args.cache)))
        return
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", "--sizes", str(n), "--d", str(args.d)]
        cmd += ["--again"] if args.again else []
        cmd += ["--cache", str(args.cache.resolve())] if args.cache else []
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        if result.returncode:
            print(result.stderr[-2000:], file=sys.stderr)
            continue
        print(result.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
