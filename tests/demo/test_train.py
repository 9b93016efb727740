"""The embedded demo: the committed artifacts load offline and are a real (trained) model and SAE,
and the training script itself runs end to end at tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.demo import DEMO_DIR, DEMO_MODEL_DIR, DEMO_PROMPTS, DEMO_SAE_DIR
from generator.demo.train import DemoSpec, train_demo
from generator.inputs.corpus import chunk_documents, iter_documents, shuffled_stdlib
from generator.inputs.model_folder import load_model_dir

pytestmark = pytest.mark.slow  # trains a tiny demo

TINY = DemoSpec(vocab_size=300, n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=64, n_ctx=32,
                max_seqs=200, lm_batch=8, lm_warmup=2, hook_layer=0, d_sae=64, sae_k=4,
                sae_batch_tokens=256, sae_store_batch=8, sae_buffer_batches=8,
                sae_dead_window=20, sae_norm_batches=2, eval_batch=16)
METRIC_KEYS = {"lm_heldout_loss", "sae_l0", "sae_explained_variance", "sae_dead_fraction",
               "sae_ce_loss_clean", "sae_ce_loss_spliced", "lm_train_tokens", "lm_train_steps",
               "lm_train_wall_s", "sae_train_tokens", "sae_train_wall_s", "seed",
               "python_version"}


@pytest.fixture(scope="module")
def demo():
    from sae_lens import SAE

    return load_model_dir(DEMO_MODEL_DIR), SAE.load_from_disk(DEMO_SAE_DIR)


@pytest.fixture(scope="module")
def stdlib_tokens(demo) -> torch.Tensor:
    """A few sequences of standard-library code, cut the way the build cuts its corpus."""
    backend = demo[0].tokenizer.backend_tokenizer

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]

    docs = iter_documents(shuffled_stdlib(seed=123)[:40])
    tokens, _ = chunk_documents(docs, encode, bos_id=0, ctx=128, n_seqs=16)
    return torch.from_numpy(tokens.astype(np.int64))


def test_committed_artifacts_load_and_fit_together(demo):
    model, sae = demo
    assert sae.cfg.d_in == model.cfg.d_model
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_pre"
    assert sae.cfg.metadata.model_name == "feature-browser-demo"
    assert model.cfg.d_vocab == len(model.tokenizer) == 4096
    assert model.tokenizer.bos_token_id == 0
    assert model.tokenizer.name_or_path == str(DEMO_MODEL_DIR)


def test_tokenizer_round_trips_code_exactly(demo):
    tokenizer = demo[0].tokenizer
    code = 'class A:\n    def f(self, x):\n\t\treturn  x["é"]  # 2 spaces ✓\n\n'
    ids = tokenizer.encode(code, add_special_tokens=False)
    assert tokenizer.decode(ids) == code
    assert tokenizer.encode(code)[0] == 0  # BOS is added by default
    assert demo[0].to_tokens(code)[0, 0].item() == 0


def test_model_predicts_stdlib_code(demo, stdlib_tokens):
    with torch.no_grad():
        loss = demo[0](stdlib_tokens, return_type="loss").item()
    assert loss < 4.0  # a uniform guess is ln(4096) = 8.3


def test_sae_reconstructs_held_activations(demo, stdlib_tokens):
    model, sae = demo
    hook = sae.cfg.metadata.hook_name
    with torch.no_grad():
        _, cache = model.run_with_cache(stdlib_tokens, names_filter=[hook])
        x = cache[hook][stdlib_tokens != 0]
        acts = sae.encode(x)
        recon = sae.decode(acts)
    explained = 1 - ((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert explained > 0.5
    assert 1 <= (acts > 0).sum(-1).float().mean() <= 64


def test_committed_metrics_and_size():
    metrics = json.loads((DEMO_DIR / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    assert list(metrics) == sorted(metrics)
    size = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert size < 6_000_000


def test_retraining_replaces_the_artifacts_and_nothing_else():
    """The embedded demo's folder is replaced whole when retrained into, so it must hold the
    trained artifacts alone: the package's code and the demo's prompts live beside it (retraining
    once deleted generator/demo/__init__.py and train.py with it). By default `demo-train` writes
    into the current folder, not into the installed package."""
    assert sorted(p.name for p in DEMO_DIR.iterdir()) == ["metrics.json", "model", "sae"]
    assert DEMO_MODEL_DIR.parent == DEMO_SAE_DIR.parent == DEMO_DIR
    assert DEMO_PROMPTS.parent != DEMO_DIR and DEMO_PROMPTS.is_file()
    assert train_demo.__defaults__ is not None
    assert train_demo.__defaults__[0] == Path("demo-artifacts")


def test_training_script_end_to_end_tiny(tmp_path: Path):
    from sae_lens import SAE

    out = tmp_path / "demo"
    metrics = train_demo(out, seed=1, lm_minutes=0.01, sae_minutes=0.01, quiet=True, spec=TINY)
    assert METRIC_KEYS <= metrics.keys()
    assert json.loads((out / "metrics.json").read_text()) == metrics
    model = load_model_dir(out / "model")
    sae = SAE.load_from_disk(out / "sae")
    assert sae.cfg.d_in == model.cfg.d_model == 16
    assert sae.cfg.d_sae == 64 and model.cfg.n_layers == 1
    assert sae.cfg.metadata.hook_name == "blocks.0.hook_resid_pre"
    assert model.tokenizer.name_or_path == str(out / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging left behind
    tokens = model.to_tokens("def f(x):\n    return x\n")
    assert torch.isfinite(model(tokens, return_type="loss"))


def test_failed_training_leaves_previous_output(tmp_path: Path):
    out = tmp_path / "demo"
    for name in ("model", "sae"):  # a previous demo-train output, with a file of the user's
        (out / name).mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    (out / "marker").write_text("previous")
    broken = DemoSpec(**{**TINY.__dict__, "hook_layer": 3})  # no such layer: the SAE stage fails
    with pytest.raises(KeyError):
        train_demo(out, lm_minutes=0.005, sae_minutes=0.005, quiet=True, spec=broken)
    assert (out / "marker").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
