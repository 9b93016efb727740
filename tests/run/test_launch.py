"""Several processes and long runs: `build --nproc N` (torchrun's environment, gloo on CPU) gives
the bytes one process gives; a build killed with kill -9 resumes from its checkpoint to the same
bytes; a failing process takes the job down at once. Real processes, real files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import Lines

pytestmark = pytest.mark.slow  # several processes, subprocess builds, kill -9 and resume

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--n-seqs", "24", "--ctx", "32", "--quiet", "--device", "cpu"]
SLOW = ["--n-seqs", "40", "--ctx", "32", "--batch-size", "2", "--quiet", "--device", "cpu"]


def build(tmp: Path, *args: str, background: bool = False):
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "generator.cli", "build", "--out", str(tmp / "site"),
           "--store", str(tmp / "store"), *args]
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One process, no interruption: the bytes everything else must give."""
    tmp = tmp_path_factory.mktemp("one")
    result = build(tmp, *SLOW)
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp


@pytest.mark.parametrize("nproc", [2, 3])
def test_processes_give_the_bytes_of_one(tmp_path, nproc):
    one = build(tmp_path / "one", *ARGS)
    assert one.returncode == 0, one.stderr[-2000:]
    many = build(tmp_path / "many", *ARGS, "--nproc", str(nproc))
    assert many.returncode == 0, many.stderr[-2000:]
    same_tree(tmp_path / "one" / "store", tmp_path / "many" / "store")
    same_tree(tmp_path / "one" / "site", tmp_path / "many" / "site")
    assert not (tmp_path / "many" / ".store.checkpoint").exists()


def saved_stage(folder: Path, name: str = "rank-0-of-1.pt") -> tuple[str, int] | None:
    try:
        saved = torch.load(folder / name, weights_only=True)
    except (OSError, EOFError, RuntimeError):
        return None  # not written yet (it appears by an atomic rename, but may be replaced)
    return saved["stage"], int(saved["done"])


@pytest.mark.parametrize("stage,after", [("pass1", 3), ("examples", 2)])
def test_kill_9_then_resume_gives_the_same_bytes(tmp_path, reference, stage, after):
    proc = build(tmp_path, *SLOW, "--checkpoint-minutes", "0", background=True)
    folder = tmp_path / ".store.checkpoint"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        got = saved_stage(folder)
        if got and got[0] == stage and got[1] >= after:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped = saved_stage(folder)
    assert stopped is not None and stopped[0] == stage
    result = build(tmp_path, *SLOW, "--checkpoint-minutes", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming from checkpoint {folder}: {stage}, {stopped[1]} batches" in result.stderr
    # 20 plan batches per stage; the resumed run computes only those not saved
    done_before = {"pass1": 0, "examples": 40}[stage] + stopped[1]
    assert f"this process ran {60 - done_before} batches" in result.stderr
    same_tree(reference / "store", tmp_path / "store")
    same_tree(reference / "site", tmp_path / "site")
    assert not folder.exists()


def test_checkpoint_from_other_inputs_is_refused(tmp_path):
    proc = build(tmp_path, *SLOW, "--checkpoint-minutes", "0", background=True)
    folder = tmp_path / ".store.checkpoint"
    while proc.poll() is None and not saved_stage(folder):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = build(tmp_path, *SLOW, "--seed", "1")
    lines = [line for line in result.stderr.splitlines() if line.startswith("feature-browser")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "made from other inputs or settings" in lines[-1] and str(folder) in lines[-1]
    assert not (tmp_path / "store").exists()


@pytest.fixture
def previous(tmp_path, reference) -> Path:
    shutil.copytree(reference / "site", tmp_path / "site")
    shutil.copytree(reference / "store", tmp_path / "store")
    return tmp_path


def test_a_process_that_raises_stops_the_job(previous):
    """Process 1 finds a damaged checkpoint file and raises; process 0 would wait for it in the
    first collective forever, but the job ends at once with process 1's message."""
    folder = previous / ".store.checkpoint"
    folder.mkdir()
    (folder / "rank-1-of-2.pt").write_bytes(b"not a checkpoint")
    start = time.monotonic()
    result = build(previous, *SLOW, "--nproc", "2")
    assert time.monotonic() - start < 120
    assert result.returncode == 2, result.stderr[-2000:]
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("feature-browser: error: process 1 of 2 failed"), last
    assert "rank-1-of-2.pt is damaged (checksum mismatch)" in last
    assert (previous / "site" / "index.html").is_file()
    assert not [p for p in previous.iterdir() if ".tmp-" in p.name]


def test_a_process_that_dies_stops_the_job(previous):
    before = {p: p.read_bytes() for p in (previous / "store").rglob("*") if p.is_file()}
    proc = build(previous, *SLOW, "--nproc", "2", background=True)
    assert proc.stdout is not None
    output = Lines(proc.stdout)
    # rank 0's log line after the corpus stage: both processes have loaded and are computing
    assert output.wait_for("corpus ", timeout=120), output.text()
    path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    children = [int(c) for c in path.read_text().split()]
    assert len(children) == 2, children
    os.kill(children[1], signal.SIGKILL)
    proc.wait(timeout=120)
    out = output.text()
    assert proc.returncode == 1, out[-2000:]
    assert "process 1 of 2 failed (killed by signal 9)" in out
    assert {p: p.read_bytes() for p in (previous / "store").rglob("*") if p.is_file()} == before
    assert not [p for p in previous.iterdir() if ".tmp-" in p.name]
