"""Models and SAEs as researchers have them: transformers checkpoint folders, and TransformerLens
names / sae_lens releases in the local Hugging Face cache with no network. The checkpoints are
tiny real transformers models written here; the cache is a real cache layout on disk."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generator.errors import UserError
from generator.inputs.models import load_model
from tests.checkpoints import save_checkpoint
from tests.hubcache import write_repo

ROOT = Path(__file__).resolve().parents[2]


def save_sae(folder: Path, hook: str = "blocks.0.hook_resid_pre", d_in: int = 32) -> Path:
    import sae_lens

    torch.manual_seed(1)
    cfg = sae_lens.StandardSAEConfig(d_in=d_in, d_sae=48)
    cfg.metadata.hook_name = hook
    sae = sae_lens.StandardSAE(cfg)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
    sae.save_model(folder)
    return folder


def fake_cache(hf_home: Path, repo_id: str, files: dict[str, Path]) -> None:
    """A Hugging Face hub cache entry under `hf_home`, copying `files` (name -> source)."""
    write_repo(hf_home / "hub", repo_id, {name: src.read_bytes() for name, src in files.items()})


def corpus_file(tmp_path: Path) -> Path:
    text = "def add(a, b):\n    return a + b\n\nThe quick brown fox jumps over the lazy dog.\n"
    path = tmp_path / "corpus.txt"
    path.write_text(text * 40)
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("arch,name", [("gpt2", "gpt2-finetune"), ("llama", "my-llama-run")])
def test_checkpoint_folder_computes_what_transformers_computes(tmp_path, arch, name):
    """The folder's own config and weights, whatever its name says ('llama' in a folder name
    made TransformerLens read the sizes of Llama-7B)."""
    from transformers import AutoModelForCausalLM

    folder = save_checkpoint(tmp_path / name, arch)
    model = load_model(str(folder), "cpu")
    reference = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([[0, 5, 9, 3, 27, 1, 14, 2]])
    with torch.no_grad():
        ours = model(ids).log_softmax(-1)
        theirs = reference(ids).logits.log_softmax(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert model.cfg.model_name == name
    assert model.cfg.d_model == 32 and model.cfg.n_layers == 2
    assert model.tokenizer.bos_token_id == 0


def test_build_from_a_checkpoint_folder(tmp_path, capsys):
    from generator.cli import main

    folder = save_checkpoint(tmp_path / "ckpt", "gpt2")
    sae = save_sae(tmp_path / "sae")
    code = main(["build", "--quiet", "--model", str(folder), "--sae", str(sae),
                 "--corpus", str(corpus_file(tmp_path)), "--n-seqs", "12", "--ctx", "16",
                 "--out", str(tmp_path / "site"), "--store", str(tmp_path / "store")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "features" / "47.html").is_file()


def test_checkpoint_without_sae_says_the_demo_sae_does_not_fit(tmp_path, capsys):
    from generator.cli import main

    folder = save_checkpoint(tmp_path / "ckpt", "gpt2")
    corpus = corpus_file(tmp_path)
    capsys.readouterr()  # what writing the checkpoint printed (transformers' progress bar)
    code = main(["build", "--quiet", "--model", str(folder), "--corpus",
                 str(corpus), "--ctx", "16", "--out", str(tmp_path / "site"),
                 "--store", str(tmp_path / "store")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines  # nothing from TransformerLens' loading either
    assert "no --sae given, so the embedded demo SAE was used" in lines[0]
    assert "pass --sae" in lines[0]


def test_broken_checkpoint_folders(tmp_path):
    folder = save_checkpoint(tmp_path / "ckpt", "gpt2")
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="transformers cannot load the checkpoint"):
        load_model(str(folder), "cpu")
    unknown = save_checkpoint(tmp_path / "other", "gpt2")
    config = (unknown / "config.json").read_text()
    (unknown / "config.json").write_text(config.replace('"gpt2"', '"no-such-architecture"'))
    with pytest.raises(UserError) as err:
        load_model(str(unknown), "cpu")
    assert "\n" not in str(err.value)


def _run(env_extra: dict[str, str], code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter: the hub libraries read HF_HOME and the offline flag at import."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_"))}
    env.update(env_extra, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)


@pytest.fixture
def cached_gpt2(tmp_path: Path) -> Path:
    """'gpt2' and the sae_lens release 'gpt2-small-res-jb' (layer 0) in a local cache: tiny
    stand-ins with the real names."""
    ckpt = save_checkpoint(tmp_path / "ckpt", "gpt2")
    config = json.loads((ckpt / "config.json").read_text())
    config["n_ctx"] = config["n_positions"]  # as in the hub's gpt2/config.json
    (ckpt / "config.json").write_text(json.dumps(config))
    sae = save_sae(tmp_path / "sae")
    fake_cache(tmp_path / "hf", "gpt2", {p.name: p for p in ckpt.iterdir()})
    fake_cache(tmp_path / "hf", "jbloom/GPT2-Small-SAEs-Reformatted",
               {f"blocks.0.hook_resid_pre/{p.name}": p for p in sae.iterdir()})
    return tmp_path


BUILD = """
import sys
from generator.cli import main
sys.exit(main(["build", "--quiet", "--model", "gpt2",
               "--sae", "gpt2-small-res-jb/blocks.0.hook_resid_pre", "--corpus", "corpus.txt",
               "--n-seqs", "12", "--ctx", "16", "--no-ablation", "--out", "site",
               "--store", "store"]))
"""


@pytest.mark.slow
def test_names_load_from_the_cache_when_offline(cached_gpt2):
    corpus_file(cached_gpt2)
    result = _run({"HF_HUB_OFFLINE": "1"}, BUILD, cached_gpt2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model gpt2 loaded from the local Hugging Face cache" in result.stderr
    assert "SAE gpt2-small-res-jb/blocks.0.hook_resid_pre loaded from the local Hugging Face " \
           "cache" in result.stderr
    assert (cached_gpt2 / "site" / "features" / "47.html").is_file()


LOAD = """
import logging
logging.basicConfig(level=logging.INFO)
from generator.inputs.models import load_model, load_sae
model = load_model("gpt2", "cpu")
sae = load_sae("gpt2-small-res-jb/blocks.0.hook_resid_pre", "cpu")
print(model.cfg.d_model, sae.cfg.d_sae)
"""


@pytest.mark.slow
def test_unreachable_hub_falls_back_to_the_cache(cached_gpt2):
    """No offline flag set, but the hub does not answer: the cache is used at once."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = _run({"HF_ENDPOINT": endpoint}, LOAD, cached_gpt2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["32", "48"]
    assert "from the local Hugging Face cache" in result.stderr


@pytest.mark.slow
def test_names_missing_from_the_cache(tmp_path, capsys):
    code = """
from generator.cli import main
import sys
sys.exit(main(["build", "--quiet", "--model", "gpt2-medium"]))
"""
    (tmp_path / "hf").mkdir()
    result = _run({"HF_HUB_OFFLINE": "1"}, code, tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "not in the local Hugging Face cache" in lines[-1]
    assert "HF_HUB_OFFLINE is set, so the hub was not tried" in lines[-1]
    assert str(tmp_path / "hf" / "hub") in lines[-1]
