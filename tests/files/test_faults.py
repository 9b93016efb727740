"""Fault injection: the faults users meet (a CNAME inside the site, a flipped byte in the store, a
full disk, a second build on the same folders, SIGTERM from Slurm to the whole process group) each
give the promised outcome: the exit code, one line naming the problem and the fix, the old or the
complete new output byte for byte, and nothing left behind.

The fast ones render a hand-made store; the ones marked slow run real builds through the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from generator.cli import main
from generator.errors import UserError
from generator.files.lock import locked
from generator.files.manifest import MANIFEST
from generator.store.io import read_meta, write_store
from tests.fake_store import make_store
from tests.helpers import (
    TINY,
    Lines,
    assert_one_line_error,
    digests,
    hidden_leftovers,
    tree_digest,
)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    write_store(make_store(), tmp_path / "store")
    return tmp_path / "store"


def render(store: Path, out: Path, *extra: str) -> int:
    return main(["render", "--quiet", "--store", str(store), "--out", str(out), *extra])


# ---------------------------------------------------------------------------------------------
# files the user put inside our outputs


def test_a_cname_and_other_user_files_survive_a_rerender(store, tmp_path, caplog):
    site = tmp_path / "site"
    assert render(store, site) == 0
    (site / "CNAME").write_text("example.org\n")
    (site / "features" / "notes").mkdir()
    (site / "features" / "notes" / "mine.md").write_text("my notes")
    os.symlink("index.html", site / "home.html")
    stale = site / "features" / "old-page.html"  # written by the previous render: listed as ours
    stale.write_text("stale")
    with (site / MANIFEST).open("a") as f:
        f.write("features/old-page.html\n")
    with caplog.at_level("INFO"):
        assert render(store, site) == 0
    assert (site / "CNAME").read_text() == "example.org\n"
    assert (site / "features" / "notes" / "mine.md").read_text() == "my notes"
    assert os.readlink(site / "home.html") == "index.html"
    assert not stale.exists()
    assert "kept 3 file(s) you added to site: CNAME, features/notes/mine.md, home.html" in caplog.text
    listed = (site / MANIFEST).read_text().splitlines()
    assert "CNAME" not in listed and "index.html" in listed  # still the user's, next time too
    assert hidden_leftovers(tmp_path) == []


def test_a_site_from_before_manifests_keeps_its_top_level_user_files(store, tmp_path):
    site = tmp_path / "site"
    assert render(store, site) == 0
    (site / MANIFEST).unlink()
    (site / "CNAME").write_text("example.org\n")
    (site / "robots.txt").write_text("User-agent: *\n")
    assert render(store, site) == 0
    assert (site / "CNAME").is_file() and (site / "robots.txt").is_file()


def test_a_user_file_where_the_new_site_writes_one_is_refused(store, tmp_path, capsys):
    site = tmp_path / "site"
    assert render(store, site) == 0
    listed = (site / MANIFEST).read_text().replace("index.html\n", "")
    (site / MANIFEST).write_text(listed)  # as if the user had made index.html themselves
    (site / "index.html").write_text("my own front page")
    before = tree_digest(site)
    code = render(store, site)
    assert_one_line_error(code, capsys.readouterr().err, "'index.html'", "move it out")
    assert tree_digest(site) == before
    assert hidden_leftovers(tmp_path) == []


def test_a_user_file_in_a_store_survives_the_next_write(tmp_path):
    store = tmp_path / "store"
    write_store(make_store(), store)
    (store / "my_notes.txt").write_text("run 3: lr 1e-4")
    write_store(make_store(seed=1), store)
    assert (store / "my_notes.txt").read_text() == "run 3: lr 1e-4"
    assert "my_notes.txt" not in read_meta(store).files  # not checksummed as the store's


def test_a_build_carries_the_user_files_of_both_outputs(tmp_path):
    """The build's swap of the pair (StagedOutputs) goes through the same carry-over."""
    from generator.files.manifest import write_manifest
    from generator.files.outputs import SITE, STORE, StagedOutputs

    site, store = tmp_path / "site", tmp_path / "store"
    for folder, ours in ((site, "index.html"), (store, "meta.json")):
        folder.mkdir()
        (folder / ours).write_text("old")
        write_manifest(folder)
    (site / "CNAME").write_text("example.org\n")
    (store / "my_notes.txt").write_text("notes")
    with StagedOutputs({store: STORE, site: SITE}) as staged:
        for folder, ours in ((site, "index.html"), (store, "meta.json")):
            staged.path(folder).mkdir()
            (staged.path(folder) / ours).write_text("new")
            write_manifest(staged.path(folder))
        staged.commit()
    assert (site / "index.html").read_text() == "new" and (store / "meta.json").read_text() == "new"
    assert (site / "CNAME").read_text() == "example.org\n"
    assert (store / "my_notes.txt").read_text() == "notes"
    assert hidden_leftovers(tmp_path) == []


def test_a_user_file_in_an_export_survives_the_next_export(store, tmp_path):
    out = tmp_path / "np"
    assert main(["export", "--store", str(store), "--out", str(out)]) == 0
    (out / "README.md").write_text("exported for the team")
    assert main(["export", "--store", str(store), "--out", str(out), "--batch-size", "5"]) == 0
    assert (out / "README.md").read_text() == "exported for the team"
    assert (out / "batch-2.json").is_file()


def test_demo_train_refuses_every_folder_it_did_not_write(tmp_path, capsys, monkeypatch):
    """It used to delete --out whatever it held (with --out "$PWD", the current folder)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    site = tmp_path / "site"
    site.mkdir()
    (site / ".nojekyll").write_text("")
    monkeypatch.chdir(mine)
    cases = [(["--out", str(mine)], "current folder"), (["--out", "."], "current folder"),
             (["--out", str(site)], "not a feature-browser demo artifacts folder"),
             (["--out", str(tmp_path / "new"), "--lm-minutes", "-1"], "--lm-minutes -1.0"),
             (["--out", str(tmp_path / "new"), "--sae-minutes", "nan"], "--sae-minutes nan")]
    for args, needle in cases:
        code = main(["demo-train", *args])
        assert_one_line_error(code, capsys.readouterr().err, needle)
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "site"]


# ---------------------------------------------------------------------------------------------
# a damaged store


def _flip(file: Path, seed: int) -> None:
    """Random bytes written into the middle of the file (its length unchanged): what a failing
    disk or a bad copy does, and what a truncation check cannot see."""
    raw = bytearray(file.read_bytes())
    rng = np.random.default_rng(seed)
    n = min(4000, max(1, len(raw) // 4))
    at = (len(raw) - n) // 2
    noise = rng.integers(1, 256, n, dtype=np.uint8)  # never 0: every byte changes
    raw[at:at + n] = (np.frombuffer(bytes(raw[at:at + n]), np.uint8) ^ noise).tobytes()
    file.write_bytes(bytes(raw))


def test_a_flipped_byte_in_any_store_file_is_refused_by_render_and_export(tmp_path, capsys):
    """4,000 random bytes in the middle of examples.parquet used to render garbage, exit 0."""
    clean = tmp_path / "clean"
    write_store(make_store(), clean)
    names = sorted(read_meta(clean).files)
    assert {"examples.parquet", "latents.parquet", "sequences.parquet", "vocab.parquet"} <= set(names)
    for n, name in enumerate(names):
        store = tmp_path / f"store-{n}"
        shutil.copytree(clean, store)
        _flip(store / name, n)
        for command in ("render", "export"):
            out = tmp_path / f"{command}-{n}"
            code = main([command, "--store", str(store), "--out", str(out)])
            assert_one_line_error(code, capsys.readouterr().err, f"({name} differs from what",
                                  "checksum mismatch", str(store))
            assert not out.exists()
    assert hidden_leftovers(tmp_path) == []


def test_a_damaged_checkpoint_is_refused_on_resume(tmp_path):
    import torch

    from generator.compute.checkpoint import Checkpoint

    store = tmp_path / "store"
    Checkpoint.open(store, 0, 1, "abc", 0).write({"stage": "pass1", "done": 3,
                                                  "x": torch.arange(1000.0)})
    assert Checkpoint.open(store, 0, 1, "abc", 0).saved["done"] == 3
    _flip(tmp_path / ".store.checkpoint" / "rank-0-of-1.pt", 0)
    with pytest.raises(UserError, match="is damaged .checksum mismatch.; delete"):
        Checkpoint.open(store, 0, 1, "abc", 0)


# ---------------------------------------------------------------------------------------------
# a full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator:
    """mount(size) -> a new tmpfs of `size` bytes under tmp_path (unmounted afterwards)."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not allowed here ({done.stderr.strip()[:80]}); "
                        "the full-disk tests need root with CAP_SYS_ADMIN")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _size(folder: Path) -> int:
    """Bytes a folder takes on a tmpfs: whole 4 KB pages per file."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in folder.rglob("*") if p.is_file())


def test_a_disk_that_fills_during_render_is_one_line_and_keeps_the_old_site(
        store, tmp_path, small_disk, capsys):
    """It used to be an ENOSPC traceback from a page worker."""
    from generator.run.pipeline import SITE_MIN_BYTES_PER_LATENT

    assert render(store, tmp_path / "measure") == 0
    need = _size(tmp_path / "measure")
    floor = make_store().latents.d_sae * SITE_MIN_BYTES_PER_LATENT
    assert floor < need
    disk = small_disk(need + (floor + need) // 2)  # the old site, and less than a new one
    site = disk / "site"
    assert render(store, site) == 0
    (site / "CNAME").write_text("example.org\n")
    before = tree_digest(site)
    code = render(store, site)
    assert_one_line_error(code, capsys.readouterr().err, f"the disk holding --out {site} is full",
                          "No space left on device", "free some space",
                          "the previous site is untouched")
    assert tree_digest(site) == before
    assert sorted(p.name for p in disk.iterdir()) == ["site"]


def test_a_disk_clearly_too_small_is_refused_before_rendering(store, small_disk, capsys):
    disk = small_disk(64 * 1024)
    code = render(store, disk / "site")
    assert_one_line_error(code, capsys.readouterr().err, "--out", "need at least 96 KB",
                          "free some space")
    assert list(disk.iterdir()) == []


def test_a_checkpoint_on_a_full_disk_is_one_line_and_leaves_no_partial_file(small_disk):
    """torch.save used to raise RuntimeError and leave rank-0-of-1.tmp-PID behind."""
    import torch

    from generator.compute.checkpoint import Checkpoint

    disk = small_disk(1024 * 1024)
    ck = Checkpoint.open(disk / "store", 0, 1, "abc", 0)
    with pytest.raises(UserError, match=r"cannot write the checkpoint .*No space left.* 4 MB"):
        ck.write({"stage": "pass1", "done": 1, "x": torch.zeros(1_000_000)})
    assert list((disk / ".store.checkpoint").iterdir()) == []


@pytest.mark.slow  # a real build
def test_a_build_whose_site_disk_fills_keeps_the_old_pair(pair, tmp_path, small_disk, capsys):
    from generator.run.pipeline import SITE_MIN_BYTES_PER_LATENT

    site, store = pair
    need, floor = _size(site), 1024 * SITE_MIN_BYTES_PER_LATENT
    assert floor < need
    disk = small_disk(need + (floor + need) // 2)  # the old site, and less than a new one
    shutil.copytree(site, disk / "site")
    before = digests(disk / "site", store)
    code = main(["build", *TINY, "--out", str(disk / "site"), "--store", str(store)])
    assert_one_line_error(code, capsys.readouterr().err, "is full", "No space left on device",
                          "the previous site and store are untouched",
                          "then the same command resumes from the checkpoint")
    assert digests(disk / "site", store) == before
    assert sorted(p.name for p in disk.iterdir()) == ["site"]
    assert hidden_leftovers(tmp_path) == [".store.checkpoint"]  # kept on purpose, to resume


@pytest.mark.slow  # a real build
def test_a_build_whose_store_disk_fills_keeps_the_old_pair(pair, tmp_path, small_disk, capsys):
    """The store's disk also holds the checkpoint: whichever write meets the full disk, one line."""
    from generator.run.pipeline import STORE_MIN_BYTES_PER_EXAMPLE

    site, store = pair
    floor = 1024 * ((4 + 10 * 2) * STORE_MIN_BYTES_PER_EXAMPLE + 50 * 8)  # TINY's k, intervals, m
    need = _size(store)
    assert floor < need
    disk = small_disk(need + (floor + need) // 2)
    shutil.copytree(store, disk / "store")
    before = digests(site, disk / "store")
    code = main(["build", *TINY, "--out", str(site), "--store", str(disk / "store")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "No space left on device", "free some space")
    assert "cannot write the checkpoint" in err or "untouched" in err, err
    assert digests(site, disk / "store") == before
    assert not [p for p in disk.rglob("*") if ".tmp-" in p.name]


def test_an_export_onto_a_full_disk_is_one_line(store, small_disk, capsys):
    disk = small_disk(32 * 1024)
    code = main(["export", "--store", str(store), "--out", str(disk / "np")])
    assert_one_line_error(code, capsys.readouterr().err, "cannot write the export",
                          "No space left on device", "free some space")
    assert list(disk.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# two runs on the same folders


def test_a_second_run_on_folders_in_use_is_refused_at_once(store, tmp_path, capsys):
    site = tmp_path / "site"
    with locked({"--out": site.resolve()}):
        code = render(store, site)
        assert_one_line_error(code, capsys.readouterr().err, f"--out {site.resolve()} is in use "
                              "by another feature-browser run", "wait for it to finish")
        # reading the same store is fine
        assert render(store, tmp_path / "other") == 0
    with locked({"--store": store.resolve()}):  # a build is replacing the store
        code = render(store, tmp_path / "third")
        assert_one_line_error(code, capsys.readouterr().err, "--store", "is in use")
        code = main(["build", *TINY, "--out", str(tmp_path / "s4"), "--store", str(store)])
        assert_one_line_error(code, capsys.readouterr().err, "--store", "is in use")
    assert render(store, site) == 0
    assert [n for n in hidden_leftovers(tmp_path)] == []  # no lock file left either


@pytest.mark.slow  # two real builds
def test_two_builds_on_the_same_folders(pair, tmp_path):
    """The second used to be told to delete the first one's checkpoint folder."""
    site, store = pair
    args = [sys.executable, "-m", "generator.cli", "build", *TINY, "--out", str(site), "--store",
            str(store)]
    first = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    assert first.stderr is not None
    output = Lines(first.stderr)
    assert output.wait_for("load", 120), output.text()
    second = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert_one_line_error(second.returncode, second.stderr, "is in use by another "
                          f"feature-browser run (PID {first.pid} on", "wait for it to finish")
    assert first.wait(timeout=300) == 0, output.text()
    assert hidden_leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# signals to the whole process group (what `timeout` and Slurm send)


def _build(site: Path, store: Path, *extra: str) -> tuple[subprocess.Popen, Lines]:
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "generator.cli", "build",
                             *TINY, "--out", str(site), "--store", str(store), *extra],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    return proc, Lines(proc.stderr)


def _stop_group(proc: subprocess.Popen, output: Lines, signum: int) -> str:
    os.killpg(proc.pid, signum)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGABRT)  # faulthandler prints where it hangs
        proc.wait()
        pytest.fail(f"no exit 60 s after {signum} to the group:\n{output.text()[-5000:]}")
    err = output.text()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    return err


def _new_pair_is_complete(site: Path, store: Path) -> bool:
    listed = set((site / MANIFEST).read_text().splitlines())
    return (site / "index.html").is_file() and all((site / p).exists() for p in listed) and \
        sorted(orjson.loads((store / "meta.json").read_bytes())["files"]) == sorted(
            p.name for p in store.iterdir() if p.suffix == ".parquet")


@pytest.mark.slow  # real builds
@pytest.mark.parametrize(("after", "signum"), [
    ("load", signal.SIGTERM), ("pass1", signal.SIGTERM), ("quality", signal.SIGINT),
    ("map", signal.SIGTERM), ("store", signal.SIGTERM), ("render", signal.SIGTERM),
    ("site:", signal.SIGTERM)])
def test_a_signal_to_the_group_at_each_stage_boundary(pair, tmp_path, after, signum):
    """Right after a stage's line, the signal reaches the build and all its workers. Before the
    swap: the old pair, byte for byte, and an exit of 128 + the signal. After it: the complete
    new pair, exit 0, and a line that says so (it used to exit 143 with no word)."""
    site, store = pair
    before = digests(site, store)
    proc, output = _build(site, store)
    assert output.wait_for(after, 180), output.text()
    err = _stop_group(proc, output, signum)
    said = [line for line in err.splitlines() if line.startswith("feature-browser:")]
    name = signal.Signals(signum).name
    if proc.returncode == 0:  # the swap was done when the signal came
        assert after in ("render", "site:"), err
        assert len(said) <= 1 and all("arrived after the new site and store" in s for s in said)
        assert _new_pair_is_complete(site, store)
    else:
        assert after != "site:", err
        assert proc.returncode == 128 + signum, err
        assert len(said) == 1 and f"stopped by {name}" in said[0], err
        assert "the previous site and store are untouched" in said[0], err
        assert digests(site, store) == before
    assert [n for n in hidden_leftovers(tmp_path) if n != ".store.checkpoint"] == []


@pytest.mark.slow  # a real build in two processes
def test_sigterm_to_the_group_of_a_two_process_build(pair, tmp_path):
    site, store = pair
    before = digests(site, store)
    proc, output = _build(site, store, "--nproc", "2", "--checkpoint-minutes", "0")
    assert output.wait_for("pass1", 240), output.text()
    err = _stop_group(proc, output, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "untouched" in err, err
    assert digests(site, store) == before
    assert [n for n in hidden_leftovers(tmp_path) if n != ".store.checkpoint"] == []


@pytest.mark.slow  # real builds
def test_kill_9_to_the_group_then_the_same_command_again(pair, tmp_path):
    site, store = pair
    proc, output = _build(site, store, "--checkpoint-minutes", "0")
    assert output.wait_for("map", 180), output.text()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    output.text()
    assert any(n.startswith(".site.tmp-") for n in hidden_leftovers(tmp_path))
    again, output = _build(site, store, "--checkpoint-minutes", "0")
    assert again.wait(timeout=300) == 0, output.text()
    assert "resuming from checkpoint" in output.text()
    assert hidden_leftovers(tmp_path) == []
    assert _new_pair_is_complete(site, store)


# ---------------------------------------------------------------------------------------------
# inputs that are not what they seem, and options that would explode


def test_inputs_that_are_not_files_are_named_before_anything_loads(tmp_path, capsys):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * 16)
    cases = [
        (["--corpus", str(fifo)], "is a FIFO (named pipe), not a file or folder"),
        (["--corpus", "/dev/zero"], "--corpus /dev/zero is a device"),
        (["--corpus", str(loop)], "is a symbolic link loop"),
        (["--model", str(loop)], "--model", "is a symbolic link loop"),
        (["--model", str(weights)], "--model", "is a file; pass the folder that holds it"),
        (["--sae", str(weights)], "--sae", "is a file; pass the folder that holds cfg.json"),
        (["--prompts", str(fifo)], "--prompts", "is a FIFO"),
    ]
    started = time.monotonic()
    for args, *needles in cases:
        code = main(["build", *TINY, "--out", str(tmp_path / "site"), "--store",
                     str(tmp_path / "store"), *args])
        assert_one_line_error(code, capsys.readouterr().err, *needles)
    assert time.monotonic() - started < 60  # nothing read the FIFO or /dev/zero
    assert not (tmp_path / "site").exists() and not (tmp_path / "store").exists()


def test_a_jsonl_field_of_another_type_is_named(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": 12345}\n')
    code = main(["build", *TINY, "--corpus", str(corpus), "--out", str(tmp_path / "site"),
                 "--store", str(tmp_path / "store")])
    assert_one_line_error(code, capsys.readouterr().err, "c.jsonl:1 has 'text' holding a number, "
                          "not a string")


def test_options_that_would_explode_are_bounded_before_compute(tmp_path, capsys):
    prompts = tmp_path / "many.txt"
    prompts.write_text("x\n" * 10_001)
    out = ["--out", str(tmp_path / "site"), "--store", str(tmp_path / "store")]
    cases = [(["--n-bins", "1000000"], "--n-bins 1000000", "at most 1,000"),
             (["--k", "100000"], "--k 100000", "--k 1000 or less"),
             (["--n-intervals", "100", "--m", "100"], "10,000 interval samples"),
             (["--nproc", "64", "--device", "cpu"], "--nproc 64 on", "CPU core"),
             (["--prompts", str(prompts)], "10,001 prompts", "--corpus")]
    for args, *needles in cases:
        started = time.monotonic()
        code = main(["build", *TINY, *args, *out])
        assert_one_line_error(code, capsys.readouterr().err, *needles)
        assert time.monotonic() - started < 30, args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.txt"]
