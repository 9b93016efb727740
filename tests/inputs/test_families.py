"""Every model family of sae_lens' registry, as tiny random `transformers` checkpoints: what the
engine reads at the SAE's hook, and what its ablation does, equal `transformers`' own forward pass
(hidden states, and a run with the layer's output edited by a PyTorch hook); the weight processing
the SAE's config names is applied, and none when it names none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.checkpoints import FAMILIES, VOCAB, hidden_states, save_checkpoint

HOOK = "blocks.0.hook_resid_post"
TOKENS = torch.tensor([[0, 5, 9, 3, 27, 1, 14, 2, 8, 8, 30, 12, 40, 41, 3, 7],
                       [0, 44, 12, 9, 9, 3, 61, 22, 5, 17, 2, 33, 38, 1, 0, 6]])


def topk_sae(d_in: int = 32, options: dict | None = None):
    """A random sae_lens TopK SAE on HOOK (the kind the issue was found with)."""
    import sae_lens

    torch.manual_seed(3)
    cfg = sae_lens.TopKSAEConfig(d_in=d_in, d_sae=40, k=6)
    cfg.metadata.hook_name = HOOK
    if options is not None:
        cfg.metadata.model_from_pretrained_kwargs = options
    sae = sae_lens.TopKSAE(cfg)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
    return sae.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {arch: save_checkpoint(root / arch, arch) for arch in FAMILIES}


def hooked(folder: Path, sae):
    from generator.compute.activations import HookedSAE
    from generator.inputs.models import load_model, model_options
    from generator.inputs.sites import check_compatible, sae_site

    model = load_model(str(folder), "cpu", model_options(sae))
    site = sae_site(sae)
    check_compatible(model, sae, site)
    return HookedSAE(model, sae, site)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("arch", FAMILIES)
def test_the_hook_reads_what_transformers_computes(folders, arch):
    sae = topk_sae()
    engine = hooked(folders[arch], sae)
    _, read = engine.run_to_hook(TOKENS)
    theirs = hidden_states(folders[arch], TOKENS)[1]  # the residual stream after layer 0
    assert rel(read, theirs) < 1e-5
    with torch.no_grad():
        torch.testing.assert_close(engine.encode(read), sae.encode(theirs), atol=1e-4, rtol=1e-4)
    assert engine.model.weight_processing == dict.fromkeys(engine.model.weight_processing, False)


def _decoder_layers(model) -> torch.nn.ModuleList:
    """The language model's list of decoder layers, whatever the family calls it."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.endswith(("layers", ".h")) \
                and "vision" not in name and len(module) == 2:
            return module
    raise AssertionError("no decoder layers found")


def _hf_run(folder: Path, module: str | None, edit=None) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' run: (the output of `module` in layer 0, or of layer 0 itself when None;
    next-token losses), with `edit` applied to that output when given."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    seen = {}

    def hook(mod, args, output):
        first = output[0] if isinstance(output, tuple) else output
        seen["out"] = first.clone()
        if edit is None:
            return None
        return (edit(first), *output[1:]) if isinstance(output, tuple) else edit(first)

    layer = _decoder_layers(model)[0]
    handle = (layer if module is None else getattr(layer, module)).register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(TOKENS).logits
    finally:
        handle.remove()
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), TOKENS[:, 1:], reduction="none")
    return seen["out"], loss


@pytest.mark.parametrize("arch", FAMILIES)
def test_ablation_equals_transformers_with_the_layer_output_edited(folders, arch):
    sae = topk_sae()
    engine = hooked(folders[arch], sae)
    resid, read = engine.run_to_hook(TOKENS)
    acts = engine.encode(read)
    latent = int(acts.sum((0, 1)).argmax())  # the latent most active on these tokens
    with torch.inference_mode():
        delta = acts[..., latent, None] * engine.decoder_rows(torch.tensor([latent]))[0]
    ours = engine.losses(resid, TOKENS, delta)
    _, theirs = _hf_run(folders[arch], None, edit=lambda out: out - delta.clone())
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)
    assert (ours - engine.losses(resid, TOKENS)).abs().max() > 1e-3  # the edit changed something


def test_processing_flags_named_by_the_sae_are_applied_and_none_otherwise(folders):
    """GPT-NeoX (Pythia) with center_writing_weights: the residual stream loses its mean over
    d_model; without flags, it is transformers' own (the issue: 100% off before)."""
    theirs = hidden_states(folders["gpt_neox"], TOKENS)[1]
    raw = hooked(folders["gpt_neox"], topk_sae())
    centred = hooked(folders["gpt_neox"], topk_sae(options={"center_writing_weights": True}))
    _, read_raw = raw.run_to_hook(TOKENS)
    _, read_centred = centred.run_to_hook(TOKENS)
    assert rel(read_raw, theirs) < 1e-5
    assert rel(read_centred, theirs - theirs.mean(-1, keepdim=True)) < 1e-5
    assert rel(read_centred, theirs) > 0.01
    assert centred.model.weight_processing["center_writing_weights"] is True
    assert centred.model.weight_processing["fold_ln"] is True  # from_pretrained's default
    off = hooked(folders["gpt_neox"], topk_sae(options={"fold_ln": False}))
    assert off.model.weight_processing["center_writing_weights"] is True
    assert off.model.weight_processing["fold_ln"] is False


def test_a_family_that_cannot_run_exactly_is_refused_in_one_line(tmp_path):
    from generator.errors import UserError
    from generator.inputs.models import load_model

    folder = save_checkpoint(tmp_path / "llama", "llama")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["Qwen3_5ForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="Gated DeltaNet") as err:
        load_model(str(folder), "cpu")
    assert "\n" not in str(err.value)


def build(folder: Path, sae, tmp_path: Path, corpus: Path, *extra: str) -> Path:
    from generator.cli import main

    sae.save_model(tmp_path / "sae")
    code = main(["build", "--quiet", "--model", str(folder), "--sae", str(tmp_path / "sae"),
                 "--corpus", str(corpus), "--n-seqs", "6", "--ctx", "16",
                 "--out", str(tmp_path / "site"), "--store", str(tmp_path / "store"), *extra])
    assert code == 0
    return tmp_path / "store"


def assert_store_matches_transformers(store: Path, folder: Path, sae) -> Any:
    """Every stored example's activations equal the SAE's encode of transformers' hidden states
    at the included positions; returns the store."""
    from generator.store.io import read_store

    data = read_store(store)
    tokens = torch.tensor(data.seq_tokens, dtype=torch.long)
    assert int(tokens.max()) < VOCAB
    with torch.no_grad():
        theirs = sae.encode(hidden_states(folder, tokens)[1])
    row = {int(s): i for i, s in enumerate(data.seq_ids)}
    ex = data.examples
    assert len(ex.latent) >= 40  # every latent shows examples
    for j in range(len(ex.latent)):
        want = theirs[row[int(ex.seq[j])], :, int(ex.latent[j])]
        got = torch.tensor(ex.acts[j], dtype=torch.float32)
        keep = got != 0  # excluded positions (BOS, high norm) hold 0
        assert (tokens[row[int(ex.seq[j])]][keep] != data.meta.bos_id).all()
        torch.testing.assert_close(got[keep], want[keep], atol=2e-4, rtol=1e-3)
    return data


def corpus_text(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def add(a, b):\n    return a + b\n\nThe quick brown fox.\n" * 30)
    return corpus


@pytest.mark.parametrize("arch", FAMILIES)
def test_a_build_stores_what_transformers_computes(folders, arch, tmp_path):
    """The whole build on each family: every stored example's activations equal the SAE's
    encode of transformers' hidden states, and the index says which activations they are."""
    sae = topk_sae()
    data = assert_store_matches_transformers(
        build(folders[arch], sae, tmp_path, corpus_text(tmp_path)), folders[arch], sae)
    assert data.meta.weight_processing == dict.fromkeys(data.meta.weight_processing, False)
    index = (tmp_path / "site" / "index.html").read_text()
    assert "raw model activations" in index
    assert "documents concatenated" in index


def test_qwen_without_bos_one_document_per_sequence(tmp_path):
    """Qwen's tokenizer has no BOS: EOS (<|endoftext|>) starts every sequence and separates
    documents, as in its pre-training. With --one-doc-per-seq, each sequence is one document,
    padded; the index says so and how many high-norm positions were left out."""
    from transformers import AutoTokenizer

    folder = save_checkpoint(tmp_path / "qwen3", "qwen3")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.bos_token = None
    tok.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).bos_token_id is None
    corpus = tmp_path / "docs.jsonl"
    lines = [{"text": "short one"}, {"text": "a much longer document than sixteen tokens"},
             {"text": "The quick brown fox."}] * 4
    corpus.write_text("".join(json.dumps(line) + "\n" for line in lines))
    sae = topk_sae()
    store = build(folder, sae, tmp_path, corpus, "--one-doc-per-seq")
    data = assert_store_matches_transformers(store, folder, sae)
    assert data.meta.bos_id == 0 and data.meta.settings["one_doc_per_seq"] is True
    first = data.seq_tokens[0].tolist()
    assert first[0] == 0 and first[10:] == [0] * 6  # "short one": 9 tokens, then padding
    # six sequences: documents of 9, 15 (cut), 15 (cut) tokens, twice; padding counts nowhere
    assert data.meta.n_tokens + data.meta.n_high_norm == 2 * (9 + 15 + 15)
    index = (tmp_path / "site" / "index.html").read_text()
    assert "one document per sequence" in index
    assert f"median excluded: {data.meta.n_high_norm:,}" in index


def gemma_scope_2_transcoder():
    """A random JumpReLU skip transcoder configured as sae_lens' Gemma Scope 2 converter
    configures the real ones: hook_mlp_in -> hook_mlp_out, recorded at the pre-MLP norm's output."""
    import sae_lens

    from tests.helpers import _randomised

    torch.manual_seed(5)
    cfg = sae_lens.JumpReLUSkipTranscoderConfig(d_in=32, d_out=32, d_sae=40,
                                               apply_b_dec_to_input=False)
    cfg.metadata.hook_name = "blocks.0.hook_mlp_in"
    cfg.metadata.hook_name_out = "blocks.0.hook_mlp_out"
    cfg.metadata.hf_hook_name = "model.layers.0.pre_feedforward_layernorm.output"
    cfg.metadata.hf_hook_name_out = "model.layers.0.post_feedforward_layernorm.output"
    return _randomised(sae_lens.JumpReLUSkipTranscoder(cfg))


@pytest.mark.parametrize("arch", ["gemma3", "gemma3_multimodal"])
def test_gemma_scope_2_transcoders_read_the_mlp_input_transformers_computes(folders, arch):
    """sae_lens calls their input hook_mlp_in (in HookedTransformer: before the norm); their
    config's hf_hook_name says the norm's output, and that is what the engine reads; the ablation
    edits the post-MLP norm's output, as sae_lens' hook_mlp_out there is."""
    sae = gemma_scope_2_transcoder()
    engine = hooked(folders[arch], sae)
    assert engine.site.reads == "blocks.0.ln2.hook_normalized"
    resid, read, _ = engine.run_to_hooks(TOKENS)
    theirs, clean = _hf_run(folders[arch], "pre_feedforward_layernorm")
    assert rel(read, theirs) < 1e-5
    resid_mid = hidden_states(folders[arch], TOKENS)[0]  # not what it reads: the norm matters
    assert rel(read, resid_mid) > 0.1
    acts = engine.encode(read)
    latent = int(acts.sum((0, 1)).argmax())
    with torch.inference_mode():
        delta = acts[..., latent, None] * engine.decoder_rows(torch.tensor([latent]))[0]
    ours = engine.losses(resid, TOKENS, delta)
    _, edited = _hf_run(folders[arch], "post_feedforward_layernorm",
                        edit=lambda out: out - delta.clone())
    torch.testing.assert_close(ours, edited, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(engine.losses(resid, TOKENS), clean, atol=2e-4, rtol=1e-4)
    assert (edited - clean).abs().max() > 1e-3


def test_a_folded_norm_cannot_give_the_mlp_input(folders):
    from generator.errors import UserError

    sae = gemma_scope_2_transcoder()
    sae.cfg.metadata.model_from_pretrained_kwargs = {"fold_ln": True}
    with pytest.raises(UserError, match="fold_ln"):
        hooked(folders["gemma3"], sae)


REGISTRY_NAMES = {
    "gpt2": "gpt2-small", "llama": "meta-llama/Llama-3.1-8B", "gpt_neox": "pythia-70m-deduped",
    "mistral": "mistral-7b", "qwen3": "qwen3-0.6b", "gemma2": "gemma-2-2b",
    "gemma3": "google/gemma-3-1b-pt", "gemma3_multimodal": "google/gemma-3-4b-pt",
    "qwen3_moe": "Qwen/Qwen3-30B-A3B-Base", "gpt_oss": "openai/gpt-oss-20b"}
"""Each family by the model name its SAEs give in sae_lens' registry (TransformerLens aliases
included: 'gpt2-small', 'gemma-2-2b', 'pythia-70m-deduped' name other repositories)."""

BY_NAME = """
import json, sys, torch
from transformers import AutoModelForCausalLM
from generator.inputs.hf import snapshot
from generator.inputs.models import load_model
tokens = torch.tensor(json.loads(sys.argv[1]))
out = {}
for name in json.loads(sys.argv[2]):
    model = load_model(name, "cpu")
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    ours = cache["blocks.0.hook_resid_post"]
    ref = AutoModelForCausalLM.from_pretrained(snapshot(name), dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = ref(tokens, output_hidden_states=True).hidden_states[1]
    out[name] = [model.cfg.model_name, float((ours - theirs).norm() / theirs.norm())]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_family_loads_by_its_registry_name_from_the_cache(folders, tmp_path):
    """Offline, from a Hugging Face cache holding the tiny checkpoints under the real repository
    names: the snapshot's own config decides the shapes (TransformerLens' table for
    'gemma-2-2b' would build a 2B model), and the activations are transformers' own."""
    import subprocess
    import sys

    from transformer_lens.loading_from_pretrained import get_official_model_name

    from tests.hubcache import write_repo

    for arch, name in REGISTRY_NAMES.items():
        try:
            repo = get_official_model_name(name)
        except ValueError:
            repo = name
        write_repo(tmp_path / "hf" / "hub", repo,
                   {p.name: p.read_bytes() for p in folders[arch].iterdir()})
    env = {k: v for k, v in __import__("os").environ.items()
           if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    result = subprocess.run(
        [sys.executable, "-c", BY_NAME, json.dumps(TOKENS.tolist()),
         json.dumps(list(REGISTRY_NAMES.values()))],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(loaded) == set(REGISTRY_NAMES.values())
    for name, (model_name, error) in loaded.items():
        assert model_name == name and error < 1e-5, (name, error)


def test_a_qwen_3_transcoder_on_the_bridge_name_mlp_hook_in(folders):
    """mwhanna's transcoders read `blocks.N.mlp.hook_in` (the MLP's input, after its norm, in
    TransformerLens 3's bridge): equal to what transformers' MLP receives, and the ablation at
    hook_mlp_out equal to editing the MLP's output."""
    import sae_lens
    from transformers import AutoModelForCausalLM

    from tests.helpers import _randomised

    torch.manual_seed(6)
    cfg = sae_lens.TranscoderConfig(d_in=32, d_out=32, d_sae=40, apply_b_dec_to_input=False)
    cfg.metadata.hook_name = "blocks.0.mlp.hook_in"
    cfg.metadata.hook_name_out = "blocks.0.hook_mlp_out"
    cfg.metadata.model_from_pretrained_kwargs = {"fold_ln": False}
    engine = hooked(folders["qwen3"], _randomised(sae_lens.Transcoder(cfg)))
    resid, read, _ = engine.run_to_hooks(TOKENS)
    model = AutoModelForCausalLM.from_pretrained(folders["qwen3"], dtype=torch.float32).eval()
    seen = {}
    handle = _decoder_layers(model)[0].mlp.register_forward_pre_hook(
        lambda mod, args: seen.setdefault("in", args[0].clone()))
    with torch.no_grad():
        model(TOKENS)
    handle.remove()
    assert rel(read, seen["in"]) < 1e-5
    acts = engine.encode(read)
    latent = int(acts.sum((0, 1)).argmax())
    with torch.inference_mode():
        delta = acts[..., latent, None] * engine.decoder_rows(torch.tensor([latent]))[0]
    _, edited = _hf_run(folders["qwen3"], "mlp", edit=lambda out: out - delta.clone())
    torch.testing.assert_close(engine.losses(resid, TOKENS, delta), edited, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["gemma3", "qwen3_moe", "gpt2"])
def test_bfloat16_for_models_that_do_not_fit_in_float32(folders, arch, tmp_path):
    """--dtype bfloat16 (Gemma 3 27B, Qwen 3 30B-A3B on one 80 GB GPU): the model's weights and
    activations in bfloat16, the SAE in its own float32. What the hook reads is transformers'
    float32 hidden state to bfloat16's precision; a whole build runs, and the store and the index
    say which precision."""
    from generator.inputs.models import load_model
    from generator.inputs.sites import sae_site
    from generator.store.io import read_store

    sae = topk_sae()
    model = load_model(str(folders[arch]), "cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    from generator.compute.activations import HookedSAE

    engine = HookedSAE(model, sae, sae_site(sae))
    _, read = engine.run_to_hook(TOKENS)
    theirs = hidden_states(folders[arch], TOKENS)[1]
    assert read.dtype == torch.bfloat16 and rel(read.float(), theirs) < 3e-2
    assert engine.encode(read).dtype == torch.float32
    store = build(folders[arch], sae, tmp_path, corpus_text(tmp_path), "--dtype", "bfloat16")
    assert read_store(store).meta.settings["dtype"] == "bfloat16"
    assert "raw model activations, in bfloat16" in (tmp_path / "site" / "index.html").read_text()


def test_the_demo_model_folder_in_bfloat16_and_a_bad_dtype(tmp_path):
    from generator.config import BuildConfig
    from generator.errors import UserError
    from generator.inputs.models import load_model

    model = load_model(None, "cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model(torch.tensor([[0, 5, 9, 3]])).dtype == torch.bfloat16
    with pytest.raises(UserError, match="--dtype int8 is not one of float32, bfloat16, float16"):
        BuildConfig(dtype="int8").validate()
