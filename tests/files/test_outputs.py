"""The build never loses data: `--store` and `--out` replace only previous outputs, both are swapped
in together (a failed or stopped build leaves the previous pair), leftovers of killed builds are
removed by the next one, and the folders respect the umask. Runs the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from generator.cli import main
from generator.files.atomic import sweep_stale, temp_name
from generator.files.manifest import MANIFEST
from generator.files.outputs import SITE_MARKER, STORE_MARKER
from tests.helpers import TINY, Lines, assert_one_line_error, digests, hidden_leftovers


def test_a_rendered_site_is_recognised_as_one(tmp_path):
    """The guard's markers are what the writers write: a rendered site and a written store are
    recognised as previous outputs (which a build may replace), and nothing else is."""
    from generator.files.outputs import is_site, is_store
    from generator.site.render import render_site
    from generator.store.io import write_store
    from tests.fake_store import make_store

    site = render_site(make_store(), tmp_path / "site", quiet=True).out
    write_store(make_store(), tmp_path / "store")
    assert (site / SITE_MARKER).is_file() and (tmp_path / "store" / STORE_MARKER).is_file()
    assert is_site(site) and is_store(tmp_path / "store")
    assert not is_site(tmp_path / "store") and not is_store(site) and not is_site(tmp_path)


def test_store_guard_refuses_what_is_not_a_previous_store(capsys, tmp_path, monkeypatch):
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "notes.md").write_text("x")
    a_file = tmp_path / "results.csv"
    a_file.write_text("1,2\n")
    site = tmp_path / "site"
    cases = [
        (["--store", str(mine)], ("not a feature-browser store", "--store")),
        (["--store", str(a_file)], ("is a file", "--store")),
        (["--store", ".", "--out", str(site)], ("current folder", "--store")),
        (["--store", str(tmp_path.parent), "--out", str(site)], ("one of its parents",)),
        (["--store", str(site), "--out", str(site)], ("same folder",)),
        (["--store", str(site / "data"), "--out", str(site)], ("inside --out",)),
        (["--store", str(tmp_path / "s"), "--out", str(tmp_path / "s" / "site")],
         ("inside --store",)),
        (["--out", str(mine), "--store", str(tmp_path / "store")],
         ("not a feature-browser site", "--out")),
    ]
    monkeypatch.chdir(tmp_path)
    for args, needles in cases:
        start = time.perf_counter()
        code = main(["build", "--quiet", *args])
        assert_one_line_error(code, capsys.readouterr().err, *needles)
        assert time.perf_counter() - start < 2  # refused before loading anything
    assert (mine / "notes.md").read_text() == "x" and a_file.read_text() == "1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydata", "results.csv"]


@pytest.mark.slow  # builds through the CLI
def test_failed_build_leaves_the_previous_pair(capsys, pair, tmp_path):
    """A failure in the middle of compute (after the staging folders exist) leaves both."""
    site, store = pair
    before = digests(site, store)
    from sae_lens import SAE

    from generator.demo import DEMO_SAE_DIR

    # finite weights whose activations overflow: only the engine's check can see that
    sae = SAE.load_from_disk(DEMO_SAE_DIR)
    with torch.no_grad():
        sae.W_enc[:, 5] = 3e38
    sae.save_model(tmp_path / "overflow")
    code = main(["build", *TINY, "--sae", str(tmp_path / "overflow"), "--out", str(site),
                 "--store", str(store)])
    assert_one_line_error(code, capsys.readouterr().err, "NaN/inf")
    assert digests(site, store) == before
    assert hidden_leftovers(tmp_path) == []


@pytest.mark.slow  # builds through the CLI
def test_rebuild_replaces_both_cleans_stale_leftovers_and_respects_umask(pair, tmp_path):
    site, store = pair
    (site / "old-page.html").write_text("from the previous build")
    with (site / MANIFEST).open("a") as f:  # written by the previous build, so not the user's
        f.write("old-page.html\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [tmp_path / temp_name("site").replace(f"-{os.getpid()}-", f"-{dead.pid}-"),
                 tmp_path / temp_name("store", "old").replace(f"-{os.getpid()}-", f"-{dead.pid}-")]
        busy = tmp_path / temp_name("site").replace(f"-{os.getpid()}-", f"-{alive.pid}-")
        for folder in (*stale, busy):
            folder.mkdir()
            (folder / "big.bin").write_bytes(b"0" * 1000)
        old_mask = os.umask(0o022)
        try:
            assert main(["build", *TINY, "--out", str(site), "--store", str(store)]) == 0
        finally:
            os.umask(old_mask)
        assert not (site / "old-page.html").exists() and (store / STORE_MARKER).is_file()
        assert hidden_leftovers(tmp_path) == [busy.name]  # a running build's folder is left alone
        for folder in (site, store, site / "features"):
            assert folder.stat().st_mode & 0o777 == 0o755, folder
    finally:
        alive.kill()
        alive.wait()


def test_a_parked_previous_output_is_restored_after_kill_9(tmp_path):
    """Killed between the renames of the swap: the store is parked in its staging folder."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stage = tmp_path / temp_name("store").replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    (stage / ".previous").mkdir(parents=True)
    (stage / ".previous" / "meta.json").write_text("{}")
    (stage / "store").mkdir()
    sweep_stale(tmp_path / "store")
    assert (tmp_path / "store" / "meta.json").read_text() == "{}"
    assert hidden_leftovers(tmp_path) == []


@pytest.mark.slow  # builds through the CLI
@pytest.mark.parametrize("stage", ["compute", "render"])
def test_sigterm_cleans_up_and_keeps_the_previous_pair(pair, tmp_path, stage):
    site, store = pair
    before = digests(site, store)
    # enough work that the process is still in the chosen stage when the signal comes; in the
    # compute stage a checkpoint after every batch says when the passes have begun
    args = ["--n-seqs", "256" if stage == "compute" else "16", "--ctx", "64", "--no-ablation",
            "--quiet", "--out", str(site), "--store", str(store)]
    if stage == "compute":
        args += ["--checkpoint-minutes", "0"]
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "generator.cli", "build", *args],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    checkpoint = tmp_path / ".store.checkpoint" / "rank-0-of-1.pt"

    def in_stage() -> bool:
        if stage == "compute":  # a batch of pass 1 is done: inside the engine's passes
            return checkpoint.is_file()
        # render_site writes into a temp folder of its own inside the site's staging folder
        return any(list(s.glob(".site.tmp-*/*")) for s in tmp_path.glob(".site.tmp-*"))

    assert proc.stderr is not None
    output = Lines(proc.stderr)
    while not in_stage():
        assert proc.poll() is None, output.text()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints where every thread hangs
        proc.wait()
        pytest.fail(f"no exit 60 s after SIGTERM:\n{output.text()[-5000:]}")
    err = output.text()
    said = [line for line in err.splitlines() if line.startswith("feature-browser:")]
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert len(said) == 1 and "stopped by SIGTERM" in said[0], err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert digests(site, store) == before
    # a checkpoint is kept on purpose (resume after a Slurm time limit), and the message says so
    left = hidden_leftovers(tmp_path)
    # (inside the passes there is one for certain; in the render, one from a stage boundary may be)
    assert left == [".store.checkpoint"] if stage == "compute" else left in ([], [".store.checkpoint"])
    assert ("the same command resumes" in said[0]) == bool(left), said[0]


@pytest.mark.slow  # builds through the CLI
def test_same_folder_for_both_is_named_even_when_it_is_a_site(capsys, pair):
    site, _ = pair
    code = main(["build", "--quiet", "--out", str(site), "--store", str(site)])
    err = capsys.readouterr().err
    assert code == 2 and "--out and --store are the same folder" in err, err


@pytest.mark.slow  # builds through the CLI
def test_kill_9_during_render_takes_the_page_workers_along(pair, tmp_path):
    """The forked page workers die with their parent: no pages written into a dead build's
    staging folder, no broken-pipe tracebacks, and the next build removes that folder."""
    site, store = pair
    args = ["--n-seqs", "16", "--ctx", "64", "--no-ablation", "--quiet", "--out", str(site),
            "--store", str(store)]
    proc = subprocess.Popen([sys.executable, "-m", "generator.cli", "build", *args],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(list(s.glob(".site.tmp-*/features/*")) for s in tmp_path.glob(".site.tmp-*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.kill()
    _, err = proc.communicate()

    def group() -> list[Path]:
        return [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and _pgid(int(p.name)) == proc.pid and not _zombie(p)]
    # the kernel signals the workers when their parent dies (PR_SET_PDEATHSIG); wait for that
    # to take effect, up to a bound far above its milliseconds
    deadline = time.monotonic() + 10
    while group() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert group() == [], "page workers outlived their parent"
    assert "Traceback" not in err, err
    result = subprocess.run([sys.executable, "-m", "generator.cli", "build", *args],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [n for n in hidden_leftovers(tmp_path) if ".tmp-" in n] == []


def _zombie(proc: Path) -> bool:
    """Dead and waiting to be reaped (in a container, PID 1 may never reap it)."""
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@pytest.mark.slow  # builds through the CLI, three times per worker count
@pytest.mark.parametrize("cpus", ["0", "0,1"])
def test_sigterm_to_the_process_group_while_the_page_workers_write(pair, tmp_path, cpus):
    """What `timeout` and Slurm do: SIGTERM to the build and every page worker at once. It used
    to hang (2 times out of 3) in multiprocessing.Pool.terminate, on a task-queue lock that a
    killed worker held. The build must stop within seconds, say so, and leave the old pair; the
    page workers (one per CPU the build may use: `cpus`) must be gone."""
    site, store = pair
    before = digests(site, store)
    args = ["--n-seqs", "16", "--ctx", "64", "--no-ablation", "--quiet", "--out", str(site),
            "--store", str(store)]
    for attempt in range(3):
        proc = subprocess.Popen(["taskset", "-c", cpus, sys.executable, "-X", "faulthandler", "-m",
                                 "generator.cli", "build", *args],
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stderr is not None
        output = Lines(proc.stderr)
        deadline = time.monotonic() + 120
        # late in the latent pages (the demo has 1,024, 4 chunks of 256): a worker that is done
        # waits for a task that will not come, which is when Pool's lock was held
        while sum(len(list(s.glob(".site.tmp-*/features/*"))) for s in tmp_path.glob(".site.tmp-*")) \
                < 780 + 100 * attempt:
            assert proc.poll() is None, output.text()
            assert time.monotonic() < deadline
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGABRT)  # faulthandler prints where the build hangs
            proc.wait()
            pytest.fail(f"attempt {attempt}: no exit 30 s after SIGTERM to the group:\n"
                        f"{output.text()[-5000:]}")
        err = output.text()
        said = [line for line in err.splitlines() if line.startswith("feature-browser:")]
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert len(said) == 1 and "stopped by SIGTERM" in said[0], err
        assert "Traceback" not in err, err
        assert digests(site, store) == before
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and _pgid(int(p.name)) == proc.pid and not _zombie(p)]
        assert left == [], "page workers outlived the build"
        assert [n for n in hidden_leftovers(tmp_path) if ".tmp-" in n] == []
