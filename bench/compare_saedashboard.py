"""Benchmark: feature-browser vs SAEDashboard on identical inputs, in one run (BENCHMARKS.md §1).

    .venv/bin/python bench/compare_saedashboard.py            # 2,048 x 128 tokens, all latents
    .venv/bin/python bench/compare_saedashboard.py --quick    # 128 sequences: checks the script

What runs, in this order, each as a child process timed from outside (wall seconds, peak RSS from
wait4's rusage, output size on disk):

1. the token array: the embedded demo model's tokenizer over the standard-library corpus, cut
   exactly as `generator.run.pipeline.compute` cuts it (same `load_corpus` call, n_seqs, ctx, seed 0),
   saved to bench/out/tokens.npy; after the full build the store's sequences are checked against it;
2. ours, ablation off:  feature-browser build --n-seqs N --ctx 128 --quiet --no-ablation
3. ours, full build:    feature-browser build --n-seqs N --ctx 128 --quiet
   (per-stage seconds parsed from the build's own "done in ... (load a s, ...)" log line);
4. SAEDashboard 0.8.0 (bench/sd_runner.py in its own venv bench/.sd-venv, created on first use by
   bench/setup_sd_venv.sh) on the same model, SAE, token array and all latents. SAEDashboard has no
   ablation (its `perform_ablation_experiments` raises NotImplementedError), no top tokens and no
   neighbour lists, so it computes strictly less than either of our configurations.

Prints a table and the ratios SAEDashboard / ours, and writes bench/out/results.json.
`--sd-timeout S` stops SAEDashboard after S seconds and reports how far its progress bars got.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SD_VENV = BENCH / ".sd-venv"
SD_PYTHON = SD_VENV / "bin" / "python"
FEATURE_BROWSER = ROOT / ".venv" / "bin" / "feature-browser"

log = logging.getLogger("bench")

_DONE = re.compile(r"done in ([\d.]+) s \((.*)\)")
_STAGE = re.compile(r"\s*(.+?) ([\d.]+)s$")
_PAGES = re.compile(r"wrote (\d+) pages")
_TQDM = re.compile(r"(Forward passes to cache data for vis|Extracting vis data from cached data|"
                   r"Saving feature-centric vis):\s+(\d+)%\|[^|]*\|\s*(\d+)/(\d+) "
                   r"\[([^<\]]+)<([^,\]]+),?\s*([^\]]*)\]")


# ------------------------------------------------------------------------------------------------
# running and measuring one child process


@dataclass
class Run:
    """One measured child process."""

    cmd: list[str]
    wall_s: float
    cpu_s: float
    """user + system CPU seconds of the child: unlike wall time, barely moved by other load."""
    peak_rss_mb: float
    returncode: int
    timed_out: bool
    load_before: float
    """1-minute load average when the child started (> ~0.5 on an idle box: something else ran)."""
    load_after: float
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_measured(cmd: list[str], log_path: Path, timeout: float | None = None,
                 env: dict[str, str] | None = None, cwd: Path = ROOT) -> Run:
    """Run `cmd` with stdout+stderr to `log_path`; wall time from outside, peak RSS from the
    child's own rusage (os.wait4), so the orchestrator's memory never counts."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("$ %s", shlex.join(cmd))
    load_before = os.getloadavg()[0]
    with open(log_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout and time.perf_counter() - start > timeout:
                timed_out = True
                log.warning("timeout after %.0f s: stopping %s", timeout, cmd[0])
                os.killpg(proc.pid, signal.SIGTERM)
                for _ in range(100):
                    time.sleep(0.1)
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
                    pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it is reaped
    return Run(cmd=cmd, wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
               peak_rss_mb=usage.ru_maxrss / 1024, returncode=proc.returncode,
               timed_out=timed_out, load_before=load_before, load_after=os.getloadavg()[0],
               log=log_path.read_text(errors="replace"))


def tree_size(path: Path) -> dict[str, int]:
    """Apparent bytes, bytes on disk (what `du` says) and file counts under `path`."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else (
        [path] if path.is_file() else [])
    return {
        "bytes": sum(p.stat().st_size for p in files),
        "disk_bytes": sum(p.stat().st_blocks * 512 for p in files),
        "files": len(files),
        "html_files": sum(p.suffix == ".html" for p in files),
    }


# ------------------------------------------------------------------------------------------------
# inputs


def default_artifacts() -> tuple[Path, Path]:
    from generator.demo import DEMO_MODEL_DIR, DEMO_SAE_DIR

    return DEMO_MODEL_DIR, DEMO_SAE_DIR


def make_tokens(model_dir: Path, n_seqs: int, ctx: int, seed: int, path: Path) -> dict[str, Any]:
    """The token array our build analyses, made by the same calls as `generator.run.pipeline.compute`:
    the model directory's tokenizer (as loaded with the model), `load_corpus` over the standard
    library, the same n_seqs, ctx and seed."""
    import numpy as np

    from generator.inputs.corpus import load_corpus
    from generator.inputs.models import load_model

    model = load_model(str(model_dir), "cpu")
    tok = model.tokenizer

    def encode(texts: list[str]) -> list[list[int]]:
        # the build's encode; an empty batch is answered here with [] because the transformers
        # tokenizer raises IndexError on it (chunk_documents may flush an empty batch at the end)
        return tok(texts, add_special_tokens=False)["input_ids"] if texts else []

    corpus = load_corpus(None, encode, tok.bos_token_id, ctx, n_seqs, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, corpus.tokens)
    return {"shape": list(corpus.tokens.shape), "dtype": str(corpus.tokens.dtype),
            "bos_id": int(corpus.bos_id), "n_docs": corpus.n_docs,
            "included_positions": int(corpus.mask.sum()), "description": corpus.description,
            "d_vocab": int(model.cfg.d_vocab), "d_model": int(model.cfg.d_model),
            "n_layers": int(model.cfg.n_layers)}


def check_store_tokens(store: Path, tokens_path: Path) -> dict[str, Any]:
    """Do the sequences our build stored equal the same rows of the saved token array?"""
    import numpy as np

    from generator.store.io import read_store

    data = read_store(store)
    tokens = np.load(tokens_path)
    same = bool(np.array_equal(np.asarray(data.seq_tokens), tokens[np.asarray(data.seq_ids)]))
    return {"store_sequences_checked": int(len(data.seq_ids)), "identical": same,
            "shown_examples": int(len(data.examples.seq)),
            "n_seqs": int(data.meta.n_seqs), "ctx": int(data.meta.ctx),
            "n_tokens_included": int(data.meta.n_tokens), "d_sae": int(data.meta.d_sae),
            "sae_architecture": data.meta.sae_architecture, "hook": data.meta.hook}


def model_work(store: Path, model_dir: Path, check: dict[str, Any], bos_id: int,
               build_log: str) -> dict[str, Any]:
    """Model FLOPs of the full build's work (bench/gpu_reference.py's count), for achieved FLOP/s.
    Only for SAEs on blocks.L.hook_resid_pre, which the count assumes."""
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_pre", check.get("hook", ""))
    if not m:
        return {}
    sys.path.insert(0, str(BENCH))
    from gpu_reference import flop_count

    cfg = json.loads((model_dir / "config.json").read_text())
    return flop_count(store, check["n_seqs"], check["d_sae"], True, c=cfg,
                      hook_layer=int(m.group(1)), ctx=check["ctx"], bos_id=bos_id,
                      model_passes=2 if "activation cache over" in build_log else 1)


# ------------------------------------------------------------------------------------------------
# the tools


@dataclass
class Result:
    tool: str
    config: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float | None = None
    cpu_s: float | None = None
    stages_s: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float | None = None
    peak_rss_mb: float | None = None
    output: dict[str, int] = field(default_factory=dict)
    pages: int | None = None
    status: str = "ok"
    note: str = ""


def parse_build_log(text: str) -> tuple[dict[str, float], int | None]:
    stages: dict[str, float] = {}
    found = list(_DONE.finditer(text))
    if found:
        match = found[-1]
        for part in match.group(2).split(","):
            m = _STAGE.match(part)
            if m:
                stages[m.group(1).strip()] = float(m.group(2))
    pages = _PAGES.findall(text)
    return stages, int(pages[-1]) if pages else None


def run_ours(args: argparse.Namespace, ablation: bool, n_tokens: int, env: dict[str, str]) -> Result:
    config = "full" if ablation else "no-ablation"
    res = Result(tool="feature-browser", config=config)
    site, store = args.out_dir / "site", args.out_dir / "store"
    cmd = [str(FEATURE_BROWSER), "build", "--n-seqs", str(args.n_seqs), "--ctx", str(args.ctx),
           "--out", str(site), "--store", str(store), "--quiet"]
    if args.model:
        cmd += ["--model", str(args.model)]
    if args.sae:
        cmd += ["--sae", str(args.sae)]
    if not ablation:
        cmd.append("--no-ablation")
    walls, cpus, rss, stage_runs = [], [], [], []
    for rep in range(args.repeat):
        for path in (site, store):  # every repetition builds from nothing
            shutil.rmtree(path, ignore_errors=True)
        run = run_measured(cmd, args.out_dir / "logs" / f"ours-{config}-{rep}.log", env=env)
        stages, pages = parse_build_log(run.log)
        res.runs.append({"wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_mb": run.peak_rss_mb,
                         "returncode": run.returncode, "stages_s": stages, "pages": pages,
                         "load_before": run.load_before, "load_after": run.load_after})
        if not run.ok:
            res.status = f"failed (exit {run.returncode})"
            res.note = "\n".join(run.log.strip().splitlines()[-25:])
            log.error("feature-browser build failed:\n%s", res.note)
            return res
        walls.append(run.wall_s)
        cpus.append(run.cpu_s)
        rss.append(run.peak_rss_mb)
        stage_runs.append(stages)
        res.pages = pages
        log.info("ours %-11s rep %d: %.1f s wall, %.1f s CPU, %.0f MB peak RSS, load %.1f->%.1f, "
                 "stages %s", config, rep, run.wall_s, run.cpu_s, run.peak_rss_mb,
                 run.load_before, run.load_after, stages)
    res.wall_s = statistics.median(walls)
    res.cpu_s = statistics.median(cpus)
    res.stages_s = {k: statistics.median(s.get(k, 0.0) for s in stage_runs) for k in stage_runs[0]}
    res.stages_s["startup (imports, outside stages)"] = max(
        0.0, res.wall_s - sum(v for v in res.stages_s.values()))
    res.tokens_per_s = n_tokens / res.wall_s
    res.peak_rss_mb = max(rss)
    res.output = tree_size(site)
    res.output["store_bytes"] = tree_size(store)["bytes"]
    if res.pages is None:
        res.pages = res.output["html_files"]
    return res


def ensure_sd_venv() -> None:
    if (SD_VENV / ".ready").exists() and SD_PYTHON.exists():
        return
    log.info("creating %s (SAEDashboard 0.8.0, CPU torch 2.13.0): a few minutes, once", SD_VENV)
    subprocess.run(["bash", str(BENCH / "setup_sd_venv.sh")], check=True)


def sd_progress(text: str) -> dict[str, Any]:
    """The last state of each SAEDashboard tqdm bar found in its log."""
    last: dict[str, Any] = {}
    for m in _TQDM.finditer(text.replace("\r", "\n")):
        last[m.group(1)] = {"done": int(m.group(3)), "total": int(m.group(4)),
                            "elapsed": m.group(5).strip(), "remaining": m.group(6).strip(),
                            "rate": m.group(7).strip()}
    return last


def run_sd(args: argparse.Namespace, tokens_path: Path, model_dir: Path, sae_dir: Path,
           n_tokens: int, env: dict[str, str]) -> Result:
    res = Result(tool="SAEDashboard 0.8.0", config=f"features/batch {args.sd_feature_batch}, "
                 f"tokens/batch {args.sd_token_batch}")
    ensure_sd_venv()
    out_html = args.out_dir / "sd" / "feature_vis.html"
    timings = out_html.with_suffix(".timings.json")
    cmd = [str(SD_PYTHON), str(BENCH / "sd_runner.py"), "--tokens", str(tokens_path),
           "--model-dir", str(model_dir), "--sae-dir", str(sae_dir), "--out", str(out_html),
           "--timings", str(timings), "--feature-batch", str(args.sd_feature_batch),
           "--token-batch", str(args.sd_token_batch)]
    walls, cpus, rss, stage_runs = [], [], [], []
    for rep in range(args.repeat):
        shutil.rmtree(out_html.parent, ignore_errors=True)
        run = run_measured(cmd, args.out_dir / "logs" / f"sd-{rep}.log",
                           timeout=args.sd_timeout or None, env=env)
        progress = sd_progress(run.log)
        res.runs.append({"wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_mb": run.peak_rss_mb,
                         "returncode": run.returncode, "timed_out": run.timed_out,
                         "progress": progress, "load_before": run.load_before,
                         "load_after": run.load_after})
        if run.timed_out:
            res.status = f"stopped after {run.wall_s:.0f} s (--sd-timeout)"
            feats = progress.get("Extracting vis data from cached data")
            if feats and feats["done"]:
                frac = feats["done"] / feats["total"]
                res.note = (f"{feats['done']}/{feats['total']} features done in {run.wall_s:.0f} s "
                            f"({feats['rate']}); linear extrapolation of the run: "
                            f"{run.wall_s / frac:.0f} s")
                res.runs[-1]["extrapolated_wall_s"] = run.wall_s / frac
            else:
                res.note = f"progress at stop: {progress}"
            res.peak_rss_mb = run.peak_rss_mb
            log.warning("SAEDashboard %s; %s", res.status, res.note)
            return res
        if not run.ok:
            res.status = f"failed (exit {run.returncode})"
            res.note = "\n".join(run.log.strip().splitlines()[-25:])
            log.error("SAEDashboard failed:\n%s", res.note)
            return res
        info = json.loads(timings.read_text())
        walls.append(run.wall_s)
        cpus.append(run.cpu_s)
        rss.append(run.peak_rss_mb)
        stage_runs.append(info["seconds"])
        res.runs[-1]["runner"] = info
        log.info("SAEDashboard rep %d: %.1f s wall, %.1f s CPU, %.0f MB peak RSS, load %.1f->%.1f, "
                 "stages %s", rep, run.wall_s, run.cpu_s, run.peak_rss_mb, run.load_before,
                 run.load_after, info["seconds"])
    res.wall_s = statistics.median(walls)
    res.cpu_s = statistics.median(cpus)
    res.stages_s = {k: statistics.median(s[k] for s in stage_runs) for k in stage_runs[0]}
    res.stages_s["startup (imports, outside stages)"] = max(
        0.0, res.wall_s - sum(res.stages_s.values()))
    res.tokens_per_s = n_tokens / res.wall_s
    res.peak_rss_mb = max(rss)
    res.output = tree_size(out_html)
    res.pages = 1  # SAEDashboard's default: one HTML file holding every feature's dashboard
    return res


# ------------------------------------------------------------------------------------------------
# report


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["mem_gb"] = round(int(mem) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    info["gpu"] = "none"
    return info


def code_version() -> dict[str, Any]:
    """The commit measured, the files changed on top of it, and any PYTHONPATH override."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout
        except OSError:
            return ""

    return {"commit": git("rev-parse", "HEAD").strip(),
            "modified": [line[3:] for line in git("status", "--short", "--", "generator",
                                                  "templates", "static").splitlines()],
            "pythonpath": os.environ.get("PYTHONPATH", "")}


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(results: list[Result], n_tokens: int) -> list[dict[str, Any]]:
    head = ("tool", "config", "wall s", "CPU s", "tokens/s", "peak RSS MB", "output MB",
            "pages/files", "status")
    rows = []
    for r in results:
        rows.append((r.tool, r.config, fmt(r.wall_s, ".1f"), fmt(r.cpu_s, ".1f"),
                     fmt(r.tokens_per_s, ",.0f"),
                     fmt(r.peak_rss_mb, ",.0f"),
                     fmt(r.output.get("bytes", 0) / 1e6 if r.output else None, ".1f"),
                     f"{r.pages}/{r.output.get('files', '-')}" if r.output else "-", r.status))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(f"\n{n_tokens:,} tokens per run\n{line}\n{'-' * len(line)}")
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    for r in results:
        if r.stages_s:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in r.stages_s.items())
            print(f"  {r.tool} [{r.config}] stages (s): {parts}")
        if r.note and r.status != "ok":
            print(f"  {r.tool} [{r.config}]: {r.note.splitlines()[-1]}")

    ratios = []
    sd = next((r for r in results if r.tool.startswith("SAEDashboard")), None)
    for ours in (r for r in results if r.tool == "feature-browser"):
        if sd is None or sd.wall_s is None or ours.wall_s is None:
            continue
        ratio = {
            "vs": f"SAEDashboard / ours ({ours.config})",
            "wall": sd.wall_s / ours.wall_s,
            "cpu": sd.cpu_s / ours.cpu_s if sd.cpu_s and ours.cpu_s else None,
            "peak_rss": (sd.peak_rss_mb or 0) / ours.peak_rss_mb if ours.peak_rss_mb else None,
            "output_bytes": (sd.output["bytes"] / ours.output["bytes"]
                             if ours.output.get("bytes") else None),
        }
        ratios.append(ratio)
        print(f"  {ratio['vs']}: wall x{ratio['wall']:.1f}, CPU x{fmt(ratio['cpu'], '.1f')}, "
              f"peak RSS x{fmt(ratio['peak_rss'], '.2f')}"
              f", output size x{fmt(ratio['output_bytes'], '.2f')}")
    if sd is not None and sd.wall_s is None and sd.runs and "extrapolated_wall_s" in sd.runs[-1]:
        est = sd.runs[-1]["extrapolated_wall_s"]
        for ours in (r for r in results if r.tool == "feature-browser" and r.wall_s):
            ratio = {"vs": f"SAEDashboard (extrapolated) / ours ({ours.config})",
                     "wall": est / ours.wall_s}
            ratios.append(ratio)
            print(f"  {ratio['vs']}: wall x{ratio['wall']:.1f} (SAEDashboard did not finish)")
    return ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--n-seqs", type=int, default=2048, help="sequences (default 2048)")
    p.add_argument("--ctx", type=int, default=128, help="tokens per sequence (default 128)")
    p.add_argument("--quick", action="store_true", help="128 sequences: to test this script")
    p.add_argument("--repeat", type=int, default=1, help="runs per tool/config; the median wall "
                   "time is reported (default 1: SAEDashboard is slow)")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the demo)")
    p.add_argument("--sae", type=Path, default=None, help="SAE directory (default: the demo)")
    p.add_argument("--out-dir", type=Path, default=BENCH / "out")
    p.add_argument("--skip-ours", action="store_true")
    p.add_argument("--skip-sd", action="store_true")
    p.add_argument("--sd-timeout", type=float, default=0,
                   help="stop SAEDashboard after this many seconds (0: never)")
    p.add_argument("--sd-feature-batch", type=int, default=256,
                   help="SaeVisConfig.minibatch_size_features (SAEDashboard default 256)")
    p.add_argument("--sd-token-batch", type=int, default=64,
                   help="SaeVisConfig.minibatch_size_tokens (SAEDashboard default 64)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_seqs = 128
    args.out_dir = args.out_dir.resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    model_dir, sae_dir = default_artifacts()
    model_dir = (args.model or model_dir).resolve()
    sae_dir = (args.sae or sae_dir).resolve()
    for path, what in ((model_dir / "config.json", "model"), (sae_dir / "cfg.json", "SAE")):
        if not path.is_file():
            sys.exit(f"compare_saedashboard: no {what} at {path.parent} (train the demo first: "
                     "`feature-browser demo-train`, or pass --model/--sae)")
    code = code_version()  # before the runs: the code measured, even if files change meanwhile
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}

    tokens_path = args.out_dir / "tokens.npy"
    start = time.perf_counter()
    tokens_info = make_tokens(model_dir, args.n_seqs, args.ctx, 0, tokens_path)
    n_tokens = tokens_info["shape"][0] * tokens_info["shape"][1]
    log.info("tokens: %s -> %s (%.1f s)", tokens_info["shape"], tokens_path,
             time.perf_counter() - start)

    results: list[Result] = []
    checks: dict[str, Any] = {}
    if not args.skip_ours:
        for ablation in (False, True):
            results.append(run_ours(args, ablation, n_tokens, env))
        if results[-1].status == "ok":
            checks = check_store_tokens(args.out_dir / "store", tokens_path)
            log.info("store vs tokens.npy: %s", checks)
            if not checks["identical"]:
                log.error("our build analysed other tokens than tokens.npy: inputs differ")
            last_log = (args.out_dir / "logs" / f"ours-full-{args.repeat - 1}.log").read_text()
            work = model_work(args.out_dir / "store", model_dir, checks, tokens_info["bos_id"],
                              last_log)
            if work:
                checks["model_flops"] = work
                sec = results[-1].stages_s.get("examples", 0.0)
                abl = work["clean_rerun"] + work["ablation_executed"]
                log.info("full build: %.0f distinct (sequence, latent) pairs re-run for ablation, "
                         "%.2f TFLOP of model work in the examples stage (%.1f s: %.0f GFLOP/s); "
                         "corpus pass(es) that ran the model: %d, %.2f TFLOP", work["pairs"],
                         abl / 1e12, sec, abl / sec / 1e9 if sec else 0, work["model_passes"],
                         work["passes"] / 1e12)
    if not args.skip_sd:
        results.append(run_sd(args, tokens_path, model_dir, sae_dir, n_tokens, env))

    ratios = print_table(results, n_tokens)
    out = {
        "date": dt.date.today().isoformat(), "machine": machine(), "code": code,
        "command": shlex.join([sys.executable, *sys.argv]),
        "inputs": {"model_dir": str(model_dir), "sae_dir": str(sae_dir),
                   "tokens": str(tokens_path), **tokens_info, "n_tokens": n_tokens},
        "input_check": checks, "results": [asdict(r) for r in results], "ratios": ratios,
    }
    for r in out["results"]:
        r["note"] = r["note"][-4000:]
    (args.out_dir / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    log.info("wrote %s", args.out_dir / "results.json")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
