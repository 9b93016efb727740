"""What the latent map (generator/latent_map.py) costs at real SAE widths: UMAP of random decoder
rows, time and peak memory, each size in a fresh process (so each pays the numba JIT, as a build
does, and the peak is its own).

    .venv/bin/python bench/latent_map.py                      # 16,384 / 65,536 / 131,072 x 768
    .venv/bin/python bench/latent_map.py --sizes 4096 --d 2304 --again

Prints one line per size: seconds of the decoder-cosine neighbours (torch, blocked: what the
build computes anyway for the latent pages), of the UMAP call (its JIT included), of a second
UMAP call in the same process (no JIT) and whether it gave the same bytes, and the peak resident
memory of the process.
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


def one(n: int, d: int, again: bool) -> dict[str, object]:
    import numpy as np
    import torch

    from generator.latent_map import N_NEIGHBOURS, latent_map
    from generator.summaries import cosine_neighbours

    w = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    start = time.perf_counter()
    ids, sims = cosine_neighbours(torch.from_numpy(w), N_NEIGHBOURS - 1)
    knn = time.perf_counter() - start
    start = time.perf_counter()
    coords = latent_map(w, ids, sims, seed=0)
    first = time.perf_counter() - start
    out: dict[str, object] = {"n": n, "d": d, "knn_s": round(knn, 1), "umap_s": round(first, 1),
                              "finite": bool(np.isfinite(coords).all()),
                              "sha": hashlib.sha256(coords.tobytes()).hexdigest()[:12]}
    if again:
        start = time.perf_counter()
        same = latent_map(w, ids, sims, seed=0)
        out["umap_again_s"] = round(time.perf_counter() - start, 1)
        out["same_bytes"] = same.tobytes() == coords.tobytes()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536, 131072])
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--again", action="store_true", help="a second call: time, same bytes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.sizes[0], args.d, args.again)))
        return
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", "--sizes", str(n), "--d", str(args.d)]
        cmd += ["--again"] if args.again else []
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        if result.returncode:
            print(result.stderr[-2000:], file=sys.stderr)
            continue
        print(result.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
