"""Bad input gets one clear line naming the problem and the fix, before any real work, and leaves
the previous site and store untouched. Runs the real CLI in-process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from generator.cli import main
from generator.files.outputs import SITE_MARKER, STORE_MARKER
from tests.helpers import assert_one_line_error, tiny_sae


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["build", "--quiet", *args])
    err = capsys.readouterr().err
    return code, err


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


def test_hub_names_fail_at_once_offline(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))  # empty
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
    for name in ("data.json", "data.csv"):
        (tmp_path / name).write_text('{"text": "x = 1"}\n' * 100)
        code, err = run_cli(capsys, "--corpus", str(tmp_path / name), *out)
        assert_one_line_error(code, err, "not a corpus format", ".jsonl.gz", ".parquet")
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


# ---------------------------------------------------------------------------------------------
# one line per bad input, before any compute, previous site and store intact


@pytest.mark.parametrize("args, needles", [
    (["--batch-size", "-3"], ["--batch-size -3", "--batch-size 0 or more"]),
    (["--k", "0"], ["--k 0", "--k 1 or more"]),
    (["--n-bins", "0"], ["--n-bins 0", "--n-bins 1 or more"]),
    (["--n-intervals", "0"], ["--n-intervals 0", "--n-intervals 1 or more"]),
    (["--logit-bins", "0"], ["--logit-bins 0"]),
    (["--n-logits", "0"], ["--n-logits 0"]),
    (["--n-seqs", "-4"], ["--n-seqs -4", "--n-seqs 1 or more"]),
    (["--n-seqs", "0"], ["--n-seqs 0"]),
    (["--m", "0"], ["--m 0"]),
    (["--seed", "-1"], ["--seed -1"]),
    (["--device", "tpu"], ["--device tpu", "cpu"]),
])
def test_bad_options_refused_at_once(capsys, previous_site, args, needles):
    site, store = previous_site
    start = time.perf_counter()
    code, err = run_cli(capsys, *args, "--out", str(site), "--store", str(store))
    assert time.perf_counter() - start < 2  # before any model is loaded
    assert_one_line_error(code, err, *needles)
    assert_untouched(site, store)


def test_options_checked_against_the_model(capsys, tmp_path, previous_site):
    """Checks that need the loaded model still run before the first forward pass."""
    site, store = previous_site
    out = ["--out", str(site), "--store", str(store)]
    code, err = run_cli(capsys, "--ctx", "129", *out)
    assert_one_line_error(code, err, "--ctx 129", "128", "--ctx 128 or less")
    code, err = run_cli(capsys, "--n-logits", "5000", *out)
    assert_one_line_error(code, err, "--n-logits 5000", "at most 1,000", "--n-logits 1000 or less")
    expl = tmp_path / "expl.jsonl"
    expl.write_text('{"latent": 5000, "explanation": "x"}\n')
    code, err = run_cli(capsys, "--explanations", str(expl), *out)
    assert_one_line_error(code, err, "latent 5000", "1024 latents")
    assert_untouched(site, store)


def test_token_ids_outside_the_vocabulary(capsys, tmp_path, previous_site):
    import pyarrow as pa
    import pyarrow.parquet as pq

    site, store = previous_site
    corpus = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"input_ids": [[5, 6, 50256, 7] * 40]}), corpus)
    code, err = run_cli(capsys, "--corpus", str(corpus), "--n-seqs", "2", "--ctx", "16",
                        "--out", str(site), "--store", str(store))
    assert_one_line_error(code, err, "token id 50256", "0..4095", "another model")
    assert_untouched(site, store)


def _sae_dir(tmp_path: Path, name: str) -> Path:
    import shutil

    from generator.demo import DEMO_SAE_DIR

    return Path(shutil.copytree(DEMO_SAE_DIR, tmp_path / name))


def test_broken_sae_directories(capsys, tmp_path, previous_site):
    site, store = previous_site
    out = ["--out", str(site), "--store", str(store)]
    missing = _sae_dir(tmp_path, "missing")
    (missing / "sae_weights.safetensors").unlink()
    truncated = _sae_dir(tmp_path, "truncated")
    weights = truncated / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    garbage = _sae_dir(tmp_path, "garbage")
    (garbage / "sae_weights.safetensors").write_bytes(b"\x00" * 100)
    bad_json = _sae_dir(tmp_path, "bad_json")
    (bad_json / "cfg.json").write_text('{"d_in": 128, "d_sae": ')
    incomplete = _sae_dir(tmp_path, "incomplete")
    cfg = json.loads((incomplete / "cfg.json").read_text())
    (incomplete / "cfg.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "d_sae"}))
    wrong_width = _sae_dir(tmp_path, "wrong_width")
    (wrong_width / "cfg.json").write_text(json.dumps({**cfg, "d_sae": 2048}))
    bad_arch = _sae_dir(tmp_path, "bad_arch")
    (bad_arch / "cfg.json").write_text(json.dumps({**cfg, "architecture": "nonsense"}))
    cases = [
        (missing, ["sae_weights.safetensors", "is missing", "save the SAE again"]),
        (truncated, ["truncated"]),
        (garbage, ["damaged or truncated"]),
        (bad_json, ["not valid JSON", "line 1"]),
        (incomplete, ["lacks integer d_sae"]),
        (wrong_width, ["d_sae 2048", "W_enc", "128x1024", "different SAEs"]),
        (bad_arch, ["sae_lens cannot load", "cfg.json"]),
    ]
    for sae, needles in cases:
        start = time.perf_counter()
        code, err = run_cli(capsys, "--sae", str(sae), *out)
        assert_one_line_error(code, err, *needles)
        assert time.perf_counter() - start < 10, sae.name
    assert_untouched(site, store)


def test_nan_weights_name_the_latents(capsys, tmp_path, previous_site):
    """NaN in one decoder row and inf in one encoder column: refused before compute, naming both
    latents (a NaN decoder row otherwise builds, with NaN logit effects)."""
    from sae_lens import SAE

    from generator.demo import DEMO_SAE_DIR

    site, store = previous_site
    sae = SAE.load_from_disk(DEMO_SAE_DIR)
    with torch.no_grad():
        sae.W_dec[7, 3] = float("nan")
        sae.W_enc[:, 300] = float("inf")
    sae.save_model(tmp_path / "nan")
    start = time.perf_counter()
    code, err = run_cli(capsys, "--sae", str(tmp_path / "nan"), "--out", str(site),
                        "--store", str(store))
    assert_one_line_error(code, err, "NaN/inf", "latents 7, 300", "W_enc", "W_dec")
    assert time.perf_counter() - start < 10
    assert_untouched(site, store)


def test_broken_model_directories(capsys, tmp_path, previous_site):
    import shutil

    from generator.demo import DEMO_MODEL_DIR

    site, store = previous_site
    out = ["--out", str(site), "--store", str(store)]
    no_tok = Path(shutil.copytree(DEMO_MODEL_DIR, tmp_path / "no_tok"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tok / name).unlink()
    truncated = Path(shutil.copytree(DEMO_MODEL_DIR, tmp_path / "truncated"))
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    no_weights = Path(shutil.copytree(DEMO_MODEL_DIR, tmp_path / "no_weights"))
    (no_weights / "model.safetensors").unlink()
    bad_cfg = Path(shutil.copytree(DEMO_MODEL_DIR, tmp_path / "bad_cfg"))
    cfg = json.loads((bad_cfg / "config.json").read_text())
    (bad_cfg / "config.json").write_text(json.dumps({**cfg, "d_model": 96}))
    cases = [(no_tok, ["no tokenizer", "save_pretrained"]), (truncated, ["truncated"]),
             (no_weights, ["model.safetensors", "is missing"]),
             (bad_cfg, ["could not be loaded", "config.json"])]
    for model, needles in cases:
        code, err = run_cli(capsys, "--model", str(model), *out)
        assert_one_line_error(code, err, *needles)
    assert_untouched(site, store)


def test_render_refuses_a_site_inside_the_store_or_around_it(capsys, tmp_path):
    """`render --out store/site` would be deleted with the store by the next build (as build and
    export refuse it); a store inside the site likewise."""
    from generator.store.io import write_store
    from tests.fake_store import make_store

    store = tmp_path / "store"
    write_store(make_store(), store)
    files = sorted(p.name for p in store.iterdir())
    code = main(["render", "--quiet", "--store", str(store), "--out", str(store / "site")])
    assert_one_line_error(code, capsys.readouterr().err, "is inside --store", "the next build",
                          "side by side")
    assert sorted(p.name for p in store.iterdir()) == files
    code = main(["render", "--quiet", "--store", str(store), "--out", str(tmp_path)])
    assert_one_line_error(code, capsys.readouterr().err, "is inside --out", "side by side")
    code = main(["render", "--quiet", "--store", str(store), "--out", str(store)])
    assert_one_line_error(code, capsys.readouterr().err, "the same folder")
