"""The compute stages of a build, in order, and the store assembled from their results:

    inputs (model, SAE, checks) -> corpus -> engine passes (pass 1, pass 2, examples)
    -> summaries (logit effects, neighbours, top tokens, token index) -> quality figures
    -> prompt view -> corpus view and null sequences -> latent map -> StoreData

Every input check runs before the first forward pass, so bad input costs seconds, not a GPU hour.
Torch and the compute modules are imported inside the functions, so that importing this module
(the CLI does, for --help) stays cheap.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from generator.config import BuildConfig
from generator.run.heap import retained_heap
from generator.store.schema import CorpusView, LatentTable, Prompts, StoreData, StoreMeta, TokenLatents

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

    from generator.compute.activations import HookedSAE
    from generator.compute.checkpoint import Checkpoint
    from generator.compute.distributed import Ranks
    from generator.compute.engine import Engine, ExampleSet
    from generator.compute.quality import SaeFigures
    from generator.compute.statistics import Pass1State, Pass2State
    from generator.compute.summaries import LogitEffects
    from generator.inputs.corpus import Corpus
    from generator.inputs.sites import HookSite

log = logging.getLogger(__name__)
N_NEIGHBOURS = 5
N_TOP_TOKENS = 10
N_TOKEN_LATENTS = 16
"""latents kept per vocabulary token for the search's token index."""


@dataclass
class StageTimes:
    """Wall seconds per stage, in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from generator.files.signals import check_interrupted

        start = time.perf_counter()
        out = fn(*args, **kwargs)
        check_interrupted()
        self.seconds[name] = time.perf_counter() - start
        log.info("%-12s %7.1f s", name, self.seconds[name])
        return out


def build_date() -> str:
    """Today (UTC), or SOURCE_DATE_EPOCH's date for bit-for-bit reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC))
    return when.date().isoformat()


def versions() -> dict[str, str]:
    names = ("feature-browser", "torch", "transformer_lens", "sae_lens")
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


class Inputs(NamedTuple):
    """The loaded model and SAE, checked against each other."""

    model: HookedTransformer
    sae: SAE
    site: HookSite
    """the hook the SAE reads, parsed."""


def load_inputs(cfg: BuildConfig, device: str) -> Inputs:
    """Model, SAE and hook site, checked against each other (no forward pass yet)."""
    from generator.errors import UserError
    from generator.inputs.models import load_model, load_sae, model_options
    from generator.inputs.sites import check_compatible, sae_site

    sae = load_sae(cfg.sae, device)
    site = sae_site(sae)
    model = load_model(cfg.model, device, model_options(sae), dtype=cfg.dtype)
    try:
        check_compatible(model, sae, site)
    except UserError as err:
        if cfg.sae is None and cfg.model is not None:  # the demo SAE met the user's model
            raise UserError(f"no --sae given, so the embedded demo SAE was used, which does not "
                            f"fit --model {cfg.model} ({err}); pass --sae with an SAE trained on "
                            "this model") from None
        raise
    model.eval()
    return Inputs(model, sae, site)


def compute(cfg: BuildConfig, times: StageTimes, explanations: dict[int, str] | None = None,
            ranks: Ranks | None = None) -> StoreData | None:
    """All compute stages; returns the store's content (on rank 0; None on the other ranks,
    whose shares went to rank 0). Everything that depends on the loaded model and SAE (context
    length, vocabulary, explanation ids) is checked before the first forward pass."""
    import torch

    from generator.compute.activations import HookedSAE
    from generator.compute.distributed import Ranks
    from generator.compute.engine import Engine, EngineSettings
    from generator.compute.latent_map import latent_map
    from generator.compute.quality import encoder_decoder_cosine, sae_figures
    from generator.inputs.corpus import load_corpus
    from generator.inputs.models import pick_device, separator_id

    ranks = ranks or Ranks(device=pick_device(cfg.device))
    device = ranks.device
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    model, sae, site = times.run("load", load_inputs, cfg, device)
    check_settings(cfg, model, sae, explanations)
    tok = model.tokenizer

    def encode(texts: list[str]) -> list[list[int]]:
        return tok(texts, add_special_tokens=False)["input_ids"]

    corpus = times.run("corpus", load_corpus, cfg.corpus, encode, separator_id(tok), cfg.ctx,
                       cfg.n_seqs, cfg.seed, d_vocab=int(model.cfg.d_vocab),
                       text_field=cfg.text_field, one_doc_per_seq=cfg.one_doc_per_seq)
    hooked = HookedSAE(model, sae, site, max_norm_multiple=cfg.max_norm_multiple)
    settings = EngineSettings(k=cfg.k, n_bins=cfg.n_bins, n_intervals=cfg.n_intervals, m=cfg.m,
                              seed=cfg.seed, batch_size=cfg.batch_size, ablation=cfg.ablation,
                              quiet=cfg.quiet, clean_loss=cfg.corpus_view and not cfg.compact)
    engine = Engine(hooked, corpus.tokens, corpus.bos_id, settings, ranks)
    engine.checkpoint = open_checkpoint(cfg, ranks, corpus.tokens, hooked.d_sae, site.name)
    with retained_heap():  # batch loops: the same large blocks again and again (heap.py)
        p1, p2, shown = run_engine(engine, np.arange(len(corpus.tokens)), ranks, times)
    if shown is None:  # not rank 0: its share went to rank 0, which writes the store
        return None

    # blocked products keep small results between their blocks: not on the retained heap
    summary = times.run("summaries", summarise, cfg, model, sae, site, p1, p2)
    with retained_heap():
        # a transcoder's encoder and decoder live in different spaces: their cosine means nothing
        enc_dec, figures = times.run("quality", lambda: (
            None if site.is_transcoder else encoder_decoder_cosine(sae),
            sae_figures(hooked, corpus.tokens, corpus.bos_id, engine.batch_size,
                        engine.encode_rows)))
        prompts = times.run("prompts", run_prompts, cfg, hooked, encode, corpus.bos_id)
    kept, view, null_seqs = times.run("corpus view" if settings.clean_loss else "null seqs",
                                      view_and_nulls, engine, shown.examples.seq, cfg.seed)
    threads = torch.get_num_threads()
    coords = times.run("map", latent_map, sae.W_dec.detach().float().cpu().numpy(),
                       *summary.cos, cfg.seed)
    torch.set_num_threads(threads)  # umap's thread-pool handling resets torch's thread count
    return assemble(cfg, model, sae, site, hooked.d_sae, corpus, kept, p1, p2, shown, summary,
                    coords, enc_dec, figures, prompts, view, null_seqs)


def view_and_nulls(engine: Engine, shown_seqs: np.ndarray,
                   seed: int) -> tuple[np.ndarray, CorpusView | None, np.ndarray]:
    """The store's sequences (ascending): those the shown examples point to and the null pool
    (so that every null sequence's tokens are kept); their corpus view (None without
    EngineSettings.clean_loss); and each latent's null sequences (generator/compute/nulls.py).
    One walk over pass 1's entries serves both: the kept sequences' batches with the view,
    only the pool's without it."""
    from generator.compute.corpusview import compute_corpus_view
    from generator.compute.nulls import NullScan, null_pool

    pool = null_pool(len(engine.tokens), seed)
    kept = np.union1d(shown_seqs, pool.astype(shown_seqs.dtype))
    scan = NullScan(pool, engine.hooked.d_sae)
    if not engine.s.clean_loss:
        scan.see_all(engine.entries_of(np.sort(pool)))
        return kept, None, scan.null_seqs()
    view = compute_corpus_view(kept, engine.tokens.shape[1], scan.watch(engine.entries_of(kept)))
    return kept, view, scan.null_seqs()


class Summaries(NamedTuple):
    """What is summarised from the weights and pass 1 (generator/compute/summaries.py)."""

    cos: tuple[np.ndarray, np.ndarray]
    """decoder-cosine neighbours (ids, values), max(N_NEIGHBOURS, the map's - 1) per latent."""
    logits: LogitEffects
    toks: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    """top tokens (ids, sums, counts)."""
    coact: tuple[np.ndarray, np.ndarray] | None
    """co-activation neighbours (ids, Jaccard), None where d_sae does not allow them."""
    by_token: tuple[np.ndarray, ...] | None
    """the token index's columns."""


def summarise(cfg: BuildConfig, model: HookedTransformer, sae: SAE, site: HookSite,
              p1: Pass1State, p2: Pass2State) -> Summaries:
    import torch

    from generator.compute.activations import residual_directions
    from generator.compute.latent_map import N_NEIGHBOURS as MAP_NEIGHBOURS
    from generator.compute.summaries import (
        coact_neighbours,
        cosine_neighbours,
        logit_effects,
        token_latents,
        top_tokens,
    )

    with torch.inference_mode():
        cos = cosine_neighbours(sae.W_dec.detach(), max(N_NEIGHBOURS, MAP_NEIGHBOURS - 1))
        logits = logit_effects(residual_directions(model, sae, site), model.W_U,
                               cfg.n_logits, cfg.logit_bins)
        return Summaries(cos, logits, top_tokens(p1, N_TOP_TOKENS),
                         coact_neighbours(p1, N_NEIGHBOURS, p2),
                         token_latents(p1, N_TOKEN_LATENTS))


def assemble(cfg: BuildConfig, model: HookedTransformer, sae: SAE, site: HookSite, d_sae: int,
             corpus: Corpus, kept: np.ndarray, p1: Pass1State, p2: Pass2State, shown: ExampleSet,
             summary: Summaries, coords: np.ndarray, enc_dec: np.ndarray | None,
             figures: SaeFigures, prompts: Prompts | None, view: CorpusView | None,
             null_seqs: np.ndarray | None = None) -> StoreData:
    """The store's content from every stage's result; `kept`: the store's sequences (ascending:
    those the shown examples point to, and the null pool; view_and_nulls)."""
    from generator.inputs.corpus import vocab_bytes
    from generator.inputs.models import ln_folded, weight_processing

    n_tokens = p1.n_tokens
    toks, coact = summary.toks, summary.coact
    latents = LatentTable(
        n_active=p1.n_active.cpu().numpy(), sum_act=p1.sum_act.cpu().numpy(),
        max_act=p1.max_act.cpu().numpy(), hist=p2.hist.cpu().numpy(),
        interval_counts=p2.interval_counts.cpu().numpy(),
        logit_pos_ids=summary.logits.pos_ids, logit_pos_vals=summary.logits.pos_vals,
        logit_neg_ids=summary.logits.neg_ids, logit_neg_vals=summary.logits.neg_vals,
        logit_hist=summary.logits.hist, logit_lo=summary.logits.lo, logit_hi=summary.logits.hi,
        top_token_ids=toks[0] if toks else None, top_token_sums=toks[1] if toks else None,
        top_token_counts=toks[2] if toks else None,
        nb_cos_ids=summary.cos[0][:, :N_NEIGHBOURS], nb_cos_vals=summary.cos[1][:, :N_NEIGHBOURS],
        nb_coact_ids=coact[0] if coact else None, nb_coact_vals=coact[1] if coact else None,
        abl_mean=shown.abl_mean, abl_frac_helped=shown.abl_frac_helped,
        map_x=coords[:, 0], map_y=coords[:, 1],
        bos_sum=p1.bos_act.cpu().numpy(), first_sum=p1.first_act.cpu().numpy(),
        enc_dec_cos=enc_dec, null_seqs=null_seqs,
    )
    meta = StoreMeta(
        model=cfg.model or "demo code model (embedded)", sae=cfg.sae or "demo SAE (embedded)",
        sae_architecture=str(sae.cfg.architecture()), hook=site.name, hook_out=site.out_name,
        weight_processing=weight_processing(model),
        d_model=int(model.cfg.d_model), d_sae=d_sae, d_vocab=int(model.cfg.d_vocab),
        corpus=corpus.description, n_seqs=len(corpus.tokens), ctx=cfg.ctx, n_tokens=n_tokens,
        settings=cfg.settings(), versions=versions(), logit_direction=site.logit_direction,
        ln_folded=ln_folded(model), created=build_date(),
        l0=float(p1.n_active.sum()) / max(n_tokens, 1), has_ablation=cfg.ablation,
        bos_id=corpus.bos_id,
        n_high_norm=int((corpus.tokens != corpus.bos_id).sum()) - n_tokens,
        coact_method=coact_method(p1), **figures.meta_fields(),
    )
    return StoreData(meta=meta, latents=latents, examples=shown.examples, seq_ids=kept,
                     seq_tokens=corpus.tokens[kept], vocab=vocab_bytes(model.tokenizer, model.cfg.d_vocab),
                     prompts=prompts, corpus=view,
                     token_latents=TokenLatents(*summary.by_token) if summary.by_token else None)


def run_prompts(cfg: BuildConfig, hooked: HookedSAE,
                encode: Callable[[list[str]], list[list[int]]], bos_id: int) -> Prompts | None:
    """The prompt view (generator/compute/promptview.py): --prompts, or the demo's with the demo
    model."""
    from generator.compute.promptview import compute_prompts
    from generator.inputs.prompts import prompt_texts, tokenize_prompts

    texts = prompt_texts(cfg.prompts, demo_model=cfg.model is None)
    if texts is None:
        return None
    tokens, truncated = tokenize_prompts(texts, encode, bos_id, cfg.ctx)
    return compute_prompts(hooked, texts, tokens, truncated, bos_id, quiet=cfg.quiet)


def open_checkpoint(cfg: BuildConfig, ranks: Ranks, tokens: np.ndarray, d_sae: int,
                    hook: str) -> Checkpoint:
    """This rank's checkpoint (resumed if one from the same inputs is there). Every rank must
    resume from the same stage; a rank killed between the end of a stage and its next write
    would leave them apart, which is refused rather than mixed."""
    import torch

    from generator.compute.checkpoint import Checkpoint, fingerprint, tokens_digest
    from generator.errors import UserError

    digest = fingerprint({"settings": cfg.settings(), "model": cfg.model, "sae": cfg.sae,
                          "corpus": cfg.corpus, "text_field": cfg.text_field,
                          "batch_size": cfg.batch_size, "tokens": tokens_digest(tokens),
                          "d_sae": d_sae, "hook": hook, "world": ranks.world,
                          "device": ranks.device.split(":")[0]})
    ck = Checkpoint.open(cfg.store, ranks.rank, ranks.world, digest, cfg.checkpoint_minutes)
    stage = ["pass1", "pass2", "examples"].index(ck.saved["stage"]) if ck.saved else 0
    low = int(ranks.min_(torch.tensor([stage], device=ranks.device)))
    high = int(ranks.max_(torch.tensor([stage], device=ranks.device)))
    if low != high:
        raise UserError(f"the checkpoints in {ck.path.parent} are from different stages (a "
                        "process was killed between two of them); delete that folder to start "
                        "afresh")
    return ck


class Passes(NamedTuple):
    """The engine's combined states and the shown examples (None on ranks other than 0)."""

    p1: Pass1State
    p2: Pass2State
    shown: ExampleSet | None


def run_engine(engine: Engine, seqs: np.ndarray, ranks: Ranks, times: StageTimes) -> Passes:
    """Pass 1, pass 2 and the examples, each rank its share, the states combined after each
    pass; stages a checkpoint says were done are not run again."""
    from generator.compute.distributed import combine_pass1, combine_pass2
    from generator.compute.statistics import Pass1State, Pass2State

    ck = engine.checkpoint
    assert ck is not None, "open_checkpoint first"
    saved = ck.saved or {}  # what the checkpoint resumed (stage_done is False without it)
    if ck.stage_done("pass1"):
        p1 = Pass1State.from_state_dict(saved["p1"], engine.device)
        engine.restore_plan(seqs, saved["grid"])
        engine.carried["p1"] = saved["p1"]
    else:
        p1 = times.run("pass1", lambda: combine_pass1(engine.pass1(seqs), ranks))
        engine.carried["p1"] = p1.state_dict()
        engine.save_boundary("pass2")
    if ck.stage_done("pass2"):
        p2 = Pass2State.from_state_dict(saved["p2"], engine.device)
        engine.carried["p2"] = saved["p2"]
    else:
        recount = p1.coact.keys if p1.coact is not None and p1.coact_pruned else None
        p2 = times.run("pass2", lambda: combine_pass2(engine.pass2(p1.max_act, recount), ranks))
        engine.carried["p2"] = p2.state_dict()
        engine.save_boundary("examples")
    shown = times.run("examples", engine.examples, p1, p2)
    log.info("this process ran %d batches%s", engine.batches_run,
             f" (resumed from {ck.saved['stage']}, batch {ck.saved['done']})" if ck.saved else "")
    return Passes(p1, p2, shown)


def check_settings(cfg: BuildConfig, model: HookedTransformer, sae: SAE,
                   explanations: dict[int, str] | None) -> None:
    """The options that can only be judged against the loaded model and SAE."""
    from generator.errors import UserError
    from generator.files.outputs import check_space
    from generator.inputs.explanations import check_explanations
    from generator.inputs.models import separator_id

    tok = model.tokenizer
    if tok is None or separator_id(tok) is None:
        raise UserError("the model's tokenizer has neither a BOS nor an EOS token to separate "
                        "documents; save a tokenizer that has one with the model")
    n_ctx = int(model.cfg.n_ctx)
    if cfg.ctx > n_ctx:
        raise UserError(f"--ctx {cfg.ctx} is longer than the model's context of {n_ctx} tokens; "
                        f"pass --ctx {n_ctx} or less")
    d_vocab = int(model.cfg.d_vocab)
    if cfg.n_logits > d_vocab:
        raise UserError(f"--n-logits {cfg.n_logits} exceeds the model's vocabulary of {d_vocab} "
                        f"tokens; pass --n-logits {d_vocab} or less")
    check_explanations(explanations or {}, int(sae.cfg.d_sae), cfg.explanations)
    need = output_bytes(cfg, int(sae.cfg.d_sae))
    check_space({"--out": (cfg.out, need["--out"]), "--store": (cfg.store, need["--store"])})


SITE_MIN_BYTES_PER_LATENT = 8_000
"""a latent page's fixed markup alone (the whole page is 10-17 KB)."""
STORE_MIN_BYTES_PER_EXAMPLE = 8
"""an example row of examples.parquet, compressed, at least: its latent and sequence ids (the whole
row is 42 B on the demo at ctx 128, 33 B at ctx 32)."""


def output_bytes(cfg: BuildConfig, d_sae: int) -> dict[str, int]:
    """Lower bounds of the bytes a build writes, by option: the site's pages, and beside the
    store its examples plus the checkpoint's histograms (d_sae x n_bins x 8 bytes)."""
    examples = d_sae * (cfg.k + cfg.n_intervals * cfg.m)
    return {"--out": d_sae * SITE_MIN_BYTES_PER_LATENT,
            "--store": examples * STORE_MIN_BYTES_PER_EXAMPLE + d_sae * cfg.n_bins * 8}


def coact_method(p1: Pass1State) -> str:
    """What the co-activation neighbours are, in words for the pages."""
    if not p1.coact_pruned:
        return "Jaccard over all positions, all latent pairs"
    return (f"Jaccard over all positions (exact counts), among each latent's {p1.coact_keep} most "
            "frequent co-active partners: this SAE had too many co-active pairs to count all "
            "of them in memory")


