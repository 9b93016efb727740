"""Bad input gets one clear line naming the problem and the fix, before any real work, and leaves
the previous site and store untouched (DESIGN §6). Runs the real CLI in-process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from generator.cli import main
from generator.outputs import SITE_MARKER, STORE_MARKER
from tests.helpers import tiny_sae


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["build", "--quiet", *args])
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("feature-browser: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def save_sae(path: Path, hook: str, d_in_hook: str = "blocks.1.hook_resid_pre", nan=False) -> Path:
    sae = tiny_sae("standard", d_in_hook)
    sae.cfg.metadata.hook_name = hook
    if nan:
        with torch.no_grad():
            sae.W_enc.fill_(float("nan"))
    sae.save_model(path)
    return path


@pytest.fixture
def previous_site(tmp_path: Path) -> tuple[Path, Path]:
    """A previous site and store (their ownership markers, so that a build may replace them) with
    a file whose survival shows they were left alone."""
    site, store = tmp_path / "site", tmp_path / "store"
    for folder, marker in ((site, SITE_MARKER), (store, STORE_MARKER)):
        folder.mkdir()
        (folder / marker).write_bytes(b"")
        (folder / "marker.txt").write_text("previous build")
    return site, store


def assert_untouched(site: Path, store: Path) -> None:
    for folder in (site, store):
        assert (folder / "marker.txt").read_text() == "previous build"
        leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
        assert leftovers == [], leftovers


def test_missing_paths(capsys, tmp_path):
    code, err = run_cli(capsys, "--sae", str(tmp_path / "nope"))
    assert_one_line_error(code, err, "does not exist", "--sae")
    code, err = run_cli(capsys, "--model", "./no/such/model")
    assert_one_line_error(code, err, "does not exist", "--model")
    code, err = run_cli(capsys, "--corpus", str(tmp_path / "missing.txt"))
    assert_one_line_error(code, err, "does not exist")


def test_hub_names_fail_at_once_offline(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for flag, name in (("--sae", "gpt2-small-res-jb/blocks.8.hook_resid_pre"), ("--model", "gpt2")):
        start = time.perf_counter()
        code, err = run_cli(capsys, flag, name)
        assert time.perf_counter() - start < 15
        assert_one_line_error(code, err, name, "local", flag)


def test_unknown_hook_and_width_mismatch(capsys, tmp_path, previous_site):
    site, store = previous_site
    out = ["--out", str(site), "--store", str(store)]
    bad_hook = save_sae(tmp_path / "hook", "blocks.7.hook_resid_pre")
    code, err = run_cli(capsys, "--sae", str(bad_hook), *out)
    assert_one_line_error(code, err, "blocks.7.hook_resid_pre", "no hook")
    narrow = save_sae(tmp_path / "narrow", "blocks.1.hook_resid_pre")
    code, err = run_cli(capsys, "--sae", str(narrow), *out)
    assert_one_line_error(code, err, "d_in 16", "128")
    assert_untouched(site, store)


def test_corpus_problems(capsys, tmp_path, previous_site):
    site, store = previous_site
    out = ["--out", str(site), "--store", str(store)]
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, err = run_cli(capsys, "--corpus", str(empty), *out)
    assert_one_line_error(code, err, "too short")
    short = tmp_path / "short.txt"
    short.write_text("x = 1\n")
    code, err = run_cli(capsys, "--corpus", str(short), *out)
    assert_one_line_error(code, err, "too short", "--ctx")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 = 'd\xe9j\xe0 vu'\n".encode("latin-1") * 50)
    code, err = run_cli(capsys, "--corpus", str(latin1), *out)
    assert_one_line_error(code, err, "latin1.txt", "not UTF-8", "iconv")
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "image.png").write_bytes(b"\x89PNG")
    code, err = run_cli(capsys, "--corpus", str(folder), *out)
    assert_one_line_error(code, err, "no ")
    assert_untouched(site, store)


def test_nan_activations(capsys, tmp_path, previous_site):
    site, store = previous_site
    sae = tmp_path / "nan"
    sae.mkdir()
    from sae_lens import SAE

    from generator.demo import DEMO_SAE_DIR

    broken = SAE.load_from_disk(DEMO_SAE_DIR)
    with torch.no_grad():
        broken.W_enc[:, 3] = float("nan")
    broken.save_model(sae)
    code, err = run_cli(capsys, "--sae", str(sae), "--n-seqs", "8", "--out", str(site),
                        "--store", str(store))
    assert_one_line_error(code, err, "NaN")
    assert_untouched(site, store)


def test_cuda_requested_without_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # the check is for machines without one
    code, err = run_cli(capsys, "--device", "cuda")
    assert_one_line_error(code, err, "--device cpu")
