"""Processes on one machine: the speed-up of `build --nproc N` over one process (a benchmark, not
a test; medians of alternating runs, printed side by side).

    python bench/nproc.py                        # demo, 256 sequences, 1 vs 2 processes, CPU
    python bench/nproc.py --nproc 1 2 4 --device cuda --n-seqs 2048
    python bench/nproc.py --repeats 1 --n-seqs 64   # to try the script

Each run is the real CLI (`python -m generator.cli build ...`) in a fresh process tree, timed from
start to exit (model loading and render included, as a user sees it), and the compute stages
alone from the "done in" line of process 0 (pass 1 + pass 2 + examples). Every run's store is
compared with the first one's: the figures only count if the bytes are the same.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench.nproc")


def run(n: int, args: argparse.Namespace, out: Path) -> tuple[float, float]:
    """(wall seconds, compute seconds) of one build with n processes."""
    cmd = [sys.executable, "-m", "generator.cli", "build", "--quiet", "--nproc", str(n),
           "--n-seqs", str(args.n_seqs), "--device", args.device, "--out", str(out / "site"),
           "--store", str(out / "store"), *([] if args.ablation else ["--no-ablation"])]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"build --nproc {n} failed:\n{result.stderr[-2000:]}")
    stages = dict(re.findall(r"(\w+) ([\d.]+)s", result.stderr.split("done in")[-1]))
    return wall, sum(float(stages.get(k, 0)) for k in ("pass1", "pass2", "examples"))


def same_store(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--n-seqs", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    times: dict[int, list[tuple[float, float]]] = {n: [] for n in args.nproc}
    with tempfile.TemporaryDirectory() as tmp:
        first = None
        for r in range(args.repeats):
            for n in args.nproc:  # alternating, so drifting load hits every setting alike
                out = Path(tmp) / f"{n}-{r}"
                times[n].append(run(n, args, out))
                first = first or out
                if not same_store(first / "store", out / "store"):
                    raise SystemExit(f"--nproc {n}: the store differs from the first run's")
                log.info("run %d, %d process(es): %.1f s wall, %.1f s compute", r + 1, n,
                         *times[n][-1])
    base_wall = statistics.median(t[0] for t in times[args.nproc[0]])
    base_comp = statistics.median(t[1] for t in times[args.nproc[0]])
    print(f"\ndemo, {args.n_seqs} sequences, device {args.device}, ablation "
          f"{'on' if args.ablation else 'off'}, {os.cpu_count()} cores, medians of "
          f"{args.repeats}; every store byte-identical")
    print(f"{'processes':>9} {'wall s':>8} {'speed-up':>9} {'compute s':>10} {'speed-up':>9}")
    for n in args.nproc:
        wall = statistics.median(t[0] for t in times[n])
        comp = statistics.median(t[1] for t in times[n])
        print(f"{n:>9} {wall:>8.1f} {base_wall / wall:>8.2f}x {comp:>10.1f} "
              f"{base_comp / comp:>8.2f}x")


if __name__ == "__main__":
    main()
