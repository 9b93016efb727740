"""End to end: the real CLI builds a small site from the embedded demo (model, SAE, corpus), the
store reloads, `render` reproduces the site without torch, and a rebuild is byte-identical."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from generator.cli import main
from generator.store.io import read_store
from tests.helpers import tree_digest

pytestmark = pytest.mark.slow  # end-to-end builds of the demo through the CLI

SMALL = ["--n-seqs", "24", "--ctx", "32", "--k", "4", "--m", "2", "--quiet"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert main(["build", *SMALL, "--out", str(root / "site"), "--store", str(root / "store")]) == 0
    yield root
    mp.undo()


def test_store_contents(built):
    data = read_store(built / "store")
    meta = data.meta
    assert meta.model == "demo code model (embedded)" and meta.hook == "blocks.1.hook_resid_pre"
    assert meta.n_seqs == 24 and meta.ctx == 32 and meta.created == "2023-11-14"
    assert 0 < meta.n_tokens <= 24 * 31  # BOS positions are excluded
    assert meta.l0 == pytest.approx(data.latents.n_active.sum() / meta.n_tokens)
    d = meta.d_sae
    assert data.latents.hist.shape == (d, 50) and data.latents.logit_pos_ids.shape == (d, 10)
    assert (data.latents.hist.sum(1) == data.latents.n_active).all()
    live = data.latents.n_active > 0
    assert live.sum() > d // 2
    # every shown example points at a kept sequence whose max activation is the recorded one
    for row in range(0, len(data.examples.seq), 97):
        seq = int(data.examples.seq[row])
        assert data.tokens_of(seq).shape == (32,)
        assert data.examples.acts[row].max() > 0
    assert data.examples.dloss is not None and data.latents.abl_mean is not None
    assert meta.has_ablation and meta.ln_folded in (True, False)
    # null sequences: kept, and none is a sequence the latent's own examples show it active on
    nulls = data.latents.null_seqs
    assert nulls is not None and nulls.shape == (d, 8) and nulls.dtype == np.int32
    assert np.isin(nulls[nulls != -1], data.seq_ids).all() and (nulls[~live] != -1).all()
    shown = set(zip(data.examples.latent.tolist(), data.examples.seq.tolist(), strict=True))
    assert not any((i, s) in shown for i, row in enumerate(nulls.tolist()) for s in row)


def test_quality_signals_in_store_and_site(built):
    """The build stores the BOS / first-position totals, the encoder-decoder cosine and the
    SAE-level figures (over all 24 sequences, fewer than 256), and the index shows them."""
    data = read_store(built / "store")
    meta, lat = data.meta, data.latents
    assert meta.eval_n_seqs == 24 and 0 < meta.eval_n_positions == meta.n_tokens
    assert 0 < meta.eval_n_predictions <= meta.eval_n_positions  # predictions of non-BOS tokens
    assert 0 < meta.explained_variance <= 1
    assert meta.ce_loss_clean < meta.ce_loss_spliced < meta.ce_loss_zero
    assert meta.loss_recovered == pytest.approx(
        (meta.ce_loss_zero - meta.ce_loss_spliced) / (meta.ce_loss_zero - meta.ce_loss_clean))
    d = meta.d_sae
    assert lat.bos_sum.shape == lat.first_sum.shape == lat.enc_dec_cos.shape == (d,)
    assert (lat.bos_sum >= 0).all() and lat.bos_sum.sum() > 0  # the SAE fires at BOS too
    assert (lat.first_sum >= 0).all() and (lat.first_sum <= lat.sum_act).all()
    assert lat.enc_dec_cos.dtype == np.float32 and (np.abs(lat.enc_dec_cos) <= 1).all()
    index = (built / "site" / "index.html").read_text()
    assert "explained variance" in index and "loss recovered" in index
    assert (built / "site" / "search" / "b" / "q.js").is_file()


def test_demo_prompts_in_store_and_site(built):
    """README command 1 gives prompt pages: the demo's prompts, cut to --ctx, each a page."""
    from generator.demo import DEMO_PROMPTS
    from generator.inputs.prompts import read_prompts

    prompts = read_store(built / "store").prompts
    assert prompts is not None and prompts.text == read_prompts(DEMO_PROMPTS)
    assert all(len(t) <= 32 for t in prompts.tokens) and prompts.truncated.any()
    assert len(prompts.act) > 0 and np.isfinite(prompts.dloss).sum() > 0
    pages = sorted(p.name for p in (built / "site" / "prompts").glob("*.html"))
    assert pages == sorted([f"{n}.html" for n in range(len(prompts))] + ["index.html"])
    assert 'href="prompts/index.html"' in (built / "site" / "index.html").read_text()


def test_corpus_view_in_store_and_site(built):
    """README command 1 gives the corpus view: a page per kept sequence, whose activations are
    its examples' (the same model, SAE and tokens), linked from the index and the examples."""
    data = read_store(built / "store")
    view = data.corpus
    assert view is not None and len(view.n_latents) == len(data.seq_ids) == len(view.loss)
    ex = data.examples
    for j in range(0, len(ex.seq), 37):
        r, i = int(np.searchsorted(data.seq_ids, ex.seq[j])), int(ex.latent[j])
        e = (view.row == r) & (view.latent == i)
        np.testing.assert_allclose(view.act[e], ex.acts[j][view.pos[e]], rtol=1e-4, atol=1e-5)
    site = built / "site"
    pages = sorted(int(p.stem) for p in (site / "corpus").glob("[0-9]*.html"))
    assert pages == np.unique(ex.seq).tolist()  # a page per sequence an example points to
    assert set(pages) <= set(data.seq_ids.tolist())  # (the store keeps the null pool too)
    assert 'href="corpus/index.html"' in (site / "index.html").read_text()
    assert " data-corpus=0>" in (site / "features" / "0.html").read_text()


def test_no_corpus_view_flag(tmp_path):
    assert main(["build", *SMALL, "--no-ablation", "--no-corpus-view", "--out",
                 str(tmp_path / "site"), "--store", str(tmp_path / "store")]) == 0
    assert read_store(tmp_path / "store").corpus is None
    assert not (tmp_path / "site" / "corpus").exists()


def test_token_index_in_store_and_site(built):
    """The store's token index agrees with the latents' own top tokens (both are the top of
    pass 1's per-(latent, token) sums), and the site ships it."""
    data = read_store(built / "store")
    tl, lat = data.token_latents, data.latents
    assert tl is not None and lat.top_token_ids is not None and lat.top_token_sums is not None
    assert tl.latent.shape == (len(tl.token), 16) and (np.diff(tl.token) > 0).all()
    row = {int(t): r for r, t in enumerate(tl.token)}
    for i in np.flatnonzero(lat.n_active > 0)[::7]:
        t, total = int(lat.top_token_ids[i][0]), float(lat.top_token_sums[i][0])
        listed = dict(zip(tl.latent[row[t]].tolist(), tl.sum_act[row[t]].tolist(), strict=True))
        if i in listed:
            assert listed[i] == pytest.approx(total, rel=1e-6)
        else:  # 16 other latents fire more on its top token
            assert tl.sum_act[row[t]][-1] >= total * (1 - 1e-6)
    assert list((built / "site" / "search").glob("t*.js"))


def test_site_has_a_page_per_latent(built):
    data = read_store(built / "store")
    site = built / "site"
    pages = sorted((site / "features").glob("*.html"))
    assert len(pages) == data.meta.d_sae
    assert (site / "index.html").is_file() and (site / ".nojekyll").is_file()
    assert len(list((site / "embed").glob("*.html"))) == data.meta.d_sae


def test_rebuild_is_byte_identical(built, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert main(["build", *SMALL, "--out", str(tmp_path / "site"),
                 "--store", str(tmp_path / "store")]) == 0
    assert tree_digest(tmp_path / "site") == tree_digest(built / "site")
    for name in ("meta.json", "latents.parquet"):  # latents: the map's coordinates too
        assert (tmp_path / "store" / name).read_bytes() == (built / "store" / name).read_bytes()


def test_latent_map_in_store_and_site(built):
    """Every latent has finite map coordinates, and the site's map file holds them all."""
    data = read_store(built / "store")
    d = data.meta.d_sae
    xy = np.stack([data.latents.map_x, data.latents.map_y], axis=1)
    assert xy.shape == (d, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert len(np.unique(xy, axis=0)) > d // 2  # spread out, not collapsed
    raw = (built / "site" / "map" / "points.js").read_text()
    assert raw.startswith("fbMap(") and json.loads(raw[len("fbMap("):-3])["n"] == d
    assert (built / "site" / "map" / "overview.png").is_file()


def test_render_from_store_alone_without_torch(built, tmp_path):
    """`render` must reproduce the site from the store, importing neither torch nor sae_lens."""
    code = (
        "import sys; from generator.cli import main; "
        f"rc = main(['render', '--quiet', '--store', {str(built / 'store')!r}, "
        f"'--out', {str(tmp_path / 'site')!r}]); "
        "assert 'torch' not in sys.modules and 'sae_lens' not in sys.modules, 'torch imported'; "
        "sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert tree_digest(tmp_path / "site") == tree_digest(built / "site")


def test_help_is_fast_and_light():
    code = ("import sys, time; t = time.perf_counter(); from generator.cli import make_parser; "
            "make_parser().format_help(); "
            "assert 'torch' not in sys.modules; print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet-text", "parquet-tokens", "folder",
                                 "jsonl.gz-field"])
def test_corpus_formats(fmt, tmp_path):
    """Every local corpus format is read, tokenized into BOS-led sequences and built."""
    from generator.inputs.corpus import shuffled_stdlib

    texts = [p.read_text() for p in shuffled_stdlib(0)[:3]]
    src = tmp_path / "corpus"
    src.mkdir()
    if fmt == "txt":
        (src / "a.txt").write_text("".join(texts))
        spec = src / "a.txt"
    elif fmt == "jsonl":
        (src / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
        spec = src / "a.jsonl"
    elif fmt == "parquet-text":
        pq.write_table(pa.table({"text": texts}), src / "a.parquet")
        spec = src / "a.parquet"
    elif fmt == "parquet-tokens":
        from generator.demo import DEMO_MODEL_DIR
        from generator.inputs.model_folder import load_tokenizer

        tok = load_tokenizer(DEMO_MODEL_DIR)
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        pq.write_table(pa.table({"tokens": ids}), src / "a.parquet")
        spec = src / "a.parquet"
    elif fmt == "jsonl.gz-field":
        import gzip

        with gzip.open(src / "a.jsonl.gz", "wt", encoding="utf-8-sig") as f:  # with a BOM
            f.write("\n".join(json.dumps({"id": n, "body": t}) for n, t in enumerate(texts)))
        spec = src / "a.jsonl.gz"
    else:
        for n, t in enumerate(texts):
            (src / f"{n}.txt").write_text(t)
        spec = src
    out = ["--out", str(tmp_path / "site"), "--store", str(tmp_path / "store"), "--no-ablation"]
    if fmt == "jsonl.gz-field":
        out += ["--text-field", "body"]
    assert main(["build", "--corpus", str(spec), "--n-seqs", "6", "--ctx", "16", "--quiet",
                 *out]) == 0
    data = read_store(tmp_path / "store")
    assert data.meta.n_seqs == 6 and data.meta.corpus == str(spec)
    assert np.all(data.seq_tokens[:, 0] == 0)


def test_a_transcoder_builds_reads_one_hook_and_writes_another(tmp_path):
    """A sae_lens JumpReLU skip transcoder saved with save_model on the demo model, reading the
    MLP's normalized input and writing its output (Gemma Scope's layout): the store records both
    hooks, the pages say so, and the per-token Δloss is the ablation at the output hook."""
    import sae_lens
    import torch


    torch.manual_seed(0)
    read, write = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
    cfg = sae_lens.JumpReLUSkipTranscoderConfig(d_in=128, d_out=128, d_sae=64,
                                                apply_b_dec_to_input=False)
    cfg.metadata.hook_name, cfg.metadata.hook_name_out = read, write
    sae = sae_lens.JumpReLUSkipTranscoder(cfg)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
        sae.threshold.fill_(0.05)
        sae.W_skip.normal_(0, 0.02)
    sae.save_model(str(tmp_path / "tc"))
    site, store = tmp_path / "site", tmp_path / "store"
    assert main(["build", *SMALL, "--sae", str(tmp_path / "tc"), "--out", str(site), "--store",
                 str(store)]) == 0
    data = read_store(store)
    assert (data.meta.hook, data.meta.hook_out) == (read, write)
    assert data.meta.sae_architecture == "jumprelu_skip_transcoder"
    assert data.latents.enc_dec_cos is None  # two spaces: no cosine
    label = f"reads {read} → writes {write}"
    assert label in (site / "index.html").read_text()
    latent = int(data.examples.latent[0])
    assert label in (site / "features" / f"{latent}.html").read_text()
    # the first example's Δloss, recomputed with plain TransformerLens hooks at the output hook
    assert_first_dloss(data, write, sae.W_dec[latent].detach())


def test_a_temporal_sae_with_a_scalar_rescale_builds_through_the_cli(tmp_path):
    """A sae_lens TemporalSAE saved with save_model on the demo model, its input rescaled by a
    constant factor: it builds, the store names it, the example activations are its codes over
    whole sequences (sae_lens' encode of the full context, before any folding), and the Δloss is
    the ablation of a·W_dec[i] in the model's own units (W_dec divided by the factor)."""
    import sae_lens
    import torch

    from generator.demo import DEMO_MODEL_DIR
    from generator.inputs.model_folder import load_model_dir

    torch.manual_seed(0)
    hook, factor = "blocks.1.hook_resid_pre", 0.5
    cfg = sae_lens.TemporalSAEConfig(d_in=128, d_sae=64, n_heads=2, bottleneck_factor=4,
                                     sae_diff_type="topk", kval_topk=8, tied_weights=False,
                                     normalize_activations="constant_scalar_rescale",
                                     activation_normalization_factor=factor)
    cfg.metadata.hook_name = hook
    sae = sae_lens.TemporalSAE(cfg)
    sae.save_model(str(tmp_path / "t"))
    store = tmp_path / "store"
    assert main(["build", *SMALL, "--n-seqs", "6", "--sae", str(tmp_path / "t"), "--out",
                 str(tmp_path / "site"), "--store", str(store)]) == 0
    data = read_store(store)
    assert data.meta.sae_architecture == "temporal"
    model = load_model_dir(DEMO_MODEL_DIR)
    latent = int(data.examples.latent[0])
    tokens = first_example_tokens(data)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook)
        codes = sae.encode(cache[hook])[0, :, latent]
    keep = (tokens[0] != data.meta.bos_id)
    np.testing.assert_allclose(data.examples.acts[0], (codes * keep).numpy(), rtol=1e-4,
                               atol=1e-5)
    assert_first_dloss(data, hook, sae.W_dec[latent].detach() / factor)


def first_example_tokens(data):
    """The token ids of the store's first example's sequence, [1, ctx]."""
    import torch

    seq = int(data.examples.seq[0])
    return torch.tensor(data.seq_tokens[list(data.seq_ids).index(seq)][None]).long()


def assert_first_dloss(data, hook: str, direction) -> None:
    """The store's first example's Δloss equals the demo model re-run with plain TransformerLens
    hooks, a[t]·direction subtracted at `hook` at every position."""
    import torch

    from generator.demo import DEMO_MODEL_DIR
    from generator.inputs.model_folder import load_model_dir

    model = load_model_dir(DEMO_MODEL_DIR)
    tokens = first_example_tokens(data)
    delta = torch.tensor(data.examples.acts[0])[:, None] * direction[None, :]
    with torch.no_grad():
        clean = model(tokens, return_type="loss", loss_per_token=True)[0]
        ablated = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                                       fwd_hooks=[(hook, lambda v, hook: v - delta)])[0]
    ok = (tokens[0, 1:] != data.meta.bos_id).numpy()
    np.testing.assert_allclose(data.examples.dloss[0, :-1][ok], (ablated - clean).numpy()[ok],
                               rtol=1e-4, atol=1e-5)


def test_packed_site_of_the_demo_reads_as_its_pages(built, browser, tmp_path):
    """The demo's store as a packed site and as pages (no corpus view, which the packed site
    lacks), served from one local server: every 16th latent reads the same in both."""
    import threading

    from generator.site.render import render_site
    from generator.site.serve import make_server
    from tests.site.test_packed import assert_same_latents

    data = read_store(built / "store")
    render_site(data, tmp_path / "packed", quiet=True, packed=True)
    render_site(data, tmp_path / "pages", quiet=True, packed=False, corpus_view=False)
    server = make_server(tmp_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    context = browser.new_context()
    try:
        errors = []
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        assert_same_latents(page, url + "pages/", url + "packed/", range(0, data.latents.d_sae, 16))
        assert not errors
    finally:
        context.close()
        server.shutdown()
        server.server_close()


def test_build_explains_then_a_rebuild_keeps_the_labels(tmp_path, monkeypatch):
    """build --explain-endpoint/--explain-model: the site shows scored labels; a rebuild of the
    same bytes carries the answer log into the new store and asks the model nothing again."""
    from generator.explain.answers import log_path
    from generator.explain.labels import read_labels
    from generator.explain.samples import samples_of
    from generator.store.io import read_meta
    from tests.explain.fake_llm import FakeLLM

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    server = FakeLLM()
    args = ["build", *SMALL, "--out", str(tmp_path / "site"), "--store", str(tmp_path / "store"),
            "--explain-endpoint", server.url, "--explain-model", "fake-1"]
    try:
        assert main(args) == 0
        asked = len(server.requests)
        labels = read_labels(tmp_path / "store", read_meta(tmp_path / "store"))
        scored = [i for i, label in labels.items() if label.scores]
        # scored exactly where both kinds of held-out example exist (the defaults' split)
        data = read_store(tmp_path / "store")
        held = [samples_of(data, i, 20, 32, 1, 20) for i in labels]
        can = [s.latent for s in held if s.positives and s.negatives]
        assert asked > 0 and len(scored) > 100 and scored == can
        page = (tmp_path / f"site/features/{scored[0]}.html").read_text()
        assert "Explanation written by <span class=mdl>fake-1</span>" in page
        assert "data-sort=sd>detection" in (tmp_path / "site/index.html").read_text()
        assert main(args) == 0
        assert len(server.requests) == asked and log_path(tmp_path / "store").is_file()
        assert read_labels(tmp_path / "store", read_meta(tmp_path / "store")) == labels
    finally:
        server.close()
