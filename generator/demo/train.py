"""The embedded demo (README, "The embedded demo"): a tiny code model and an SAE on it, trained here on CPU.

`build` with no inputs must work offline on a fresh machine, so the repository ships a miniature of
the research setting, trained by this script from the one corpus every Python installation has: the
standard library's own `.py` sources. Reading top to bottom:

1. a byte-level BPE tokenizer (whitespace kept: indentation is signal in code);
2. a 2-layer TransformerLens `HookedTransformer`, trained with a plain AdamW loop for a wall-clock
   budget (throughput is measured first and the step count sized to it);
3. a TopK SAE on `blocks.1.hook_resid_pre`, trained by sae_lens' own trainer, so the artifact is
   exactly what sae_lens users produce;
4. artifacts saved small (float16 model weights) and reloaded, and the reloaded artifacts evaluated
   on held-out sequences into `metrics.json`.

Outputs go to a staging folder that replaces `out_dir` only when everything succeeded, so a failed
or interrupted run never damages the committed demo.

Run: `python -m generator.demo.train [--out DIR] [--lm-minutes X] [--sae-minutes Y]`; the
embedded demo is replaced with `--out generator/demo/artifacts`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generator.demo import DEMO_MODEL_NAME
from generator.errors import UserError
from generator.files.atomic import atomic_dir
from generator.files.outputs import DEMO, check_output, check_writable
from generator.inputs.corpus import chunk_documents, iter_documents, shuffled_stdlib, stdlib_sources
from generator.inputs.model_folder import (
    SPECIAL_TOKEN,
    build_model,
    load_model_dir,
    save_model_dir,
    save_tokenizer,
)

if TYPE_CHECKING:  # the heavy imports stay out of `import generator.demo.train`
    import torch
    from sae_lens import SAE
    from tokenizers import Tokenizer
    from transformer_lens import HookedTransformer
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSpec:
    """Every size and hyperparameter of the demo; the defaults make the committed artifacts, and
    tests pass tiny values to exercise the same code path in seconds."""

    vocab_size: int = 4096
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 128
    max_seqs: int = 1_000_000
    """cap on sequences cut from the corpus (the default takes the whole standard library)."""
    eval_frac: float = 0.05
    lm_batch: int = 32
    lm_lr: float = 2e-3
    lm_warmup: int = 100
    hook_layer: int = 1
    """the SAE reads `blocks.{hook_layer}.hook_resid_pre`."""
    d_sae: int = 1024
    sae_k: int = 24
    """TopK: exactly k latents fire per token, so L0 is fixed and no L1 coefficient needs tuning."""
    sae_lr: float = 4e-4
    sae_batch_tokens: int = 4096
    sae_store_batch: int = 32
    """sequences per LM forward pass when sae_lens fills its activation buffer."""
    sae_buffer_batches: int = 32
    sae_dead_window: int = 200
    """steps without firing after which a latent counts as dead and gets the AuxK loss."""
    sae_norm_batches: int = 20
    eval_batch: int = 64
    threads: int = 2
    """torch CPU threads; the budgets were sized on a 2-core machine."""

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.hook_layer}.hook_resid_pre"


# --------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """Byte-level BPE on the standard library: every byte sequence stays encodable, and spaces and
    newlines are ordinary tokens (no prefix space), so `decode(encode(code)) == code` exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = (doc for doc in iter_documents(stdlib_sources()) if isinstance(doc, str))
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.token_to_id(SPECIAL_TOKEN) != 0:
        raise RuntimeError(f"{SPECIAL_TOKEN} did not get id 0")
    return tokenizer


# --------------------------------------------------------------------------------------------
# Corpus


def build_sequences(
    tokenizer: PreTrainedTokenizerFast, spec: DemoSpec, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut the shuffled standard library into BOS-first sequences (the same convention the build
    uses) and hold out a random `eval_frac` of them. Returns (train, heldout, documents read)."""
    backend = tokenizer.backend_tokenizer

    def encode(texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in backend.encode_batch(texts, add_special_tokens=False)]

    docs = iter_documents(shuffled_stdlib(seed))
    bos_id = int(tokenizer.bos_token_id)
    tokens, n_docs = chunk_documents(docs, encode, bos_id, spec.n_ctx, spec.max_seqs)
    order = np.random.default_rng(seed).permutation(len(tokens))
    n_eval = max(1, round(spec.eval_frac * len(tokens)))
    heldout, train = tokens[order[:n_eval]], tokens[order[n_eval:]]
    log.info("corpus: %d documents -> %d train + %d held-out sequences of %d tokens",
             n_docs, len(train), len(heldout), spec.n_ctx)
    return train, heldout, n_docs


# --------------------------------------------------------------------------------------------
# Model directory: config.json + model.safetensors (float16) + HF tokenizer files


def model_config(spec: DemoSpec, d_vocab: int, seed: int) -> dict[str, Any]:
    """The HookedTransformerConfig arguments, as stored in config.json: enough to rebuild the model
    without any name TransformerLens would look up on the hub."""
    return {
        "model_name": DEMO_MODEL_NAME, "n_layers": spec.n_layers, "d_model": spec.d_model,
        "n_heads": spec.n_heads, "d_head": spec.d_head, "d_mlp": spec.d_mlp,
        "n_ctx": spec.n_ctx, "d_vocab": d_vocab, "act_fn": "gelu", "normalization_type": "LN",
        "positional_embedding_type": "standard", "default_prepend_bos": True, "seed": seed,
    }


def _bos_id(model: HookedTransformer) -> int:
    if model.tokenizer is None or model.tokenizer.bos_token_id is None:
        raise ValueError("the model needs a tokenizer with a BOS token")
    return int(model.tokenizer.bos_token_id)


# --------------------------------------------------------------------------------------------
# Language model training


def _batches(n: int, batch: int, seed: int) -> Iterator[np.ndarray]:
    """Endless random mini-batches of row indices, each epoch a fresh permutation."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):
            yield order[start:start + batch]


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _lm_step(model: HookedTransformer, optimizer: torch.optim.Optimizer,
             batch: torch.Tensor) -> float:
    import torch

    loss = model(batch, return_type="loss")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def _seconds_per_lm_step(model: HookedTransformer, train: torch.Tensor, spec: DemoSpec) -> float:
    """Time a few real training steps, then restore the weights: the step budget is sized from
    this machine's measured speed rather than guessed."""
    import torch

    saved = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    batch = train[: spec.lm_batch]
    _lm_step(model, optimizer, batch)  # warm-up: allocations, first-call overheads
    start, n = time.perf_counter(), 3
    for _ in range(n):
        _lm_step(model, optimizer, batch)
    model.load_state_dict(saved)
    return (time.perf_counter() - start) / n


def train_lm(model: HookedTransformer, train_np: np.ndarray, spec: DemoSpec, minutes: float,
             seed: int, progress: int = logging.INFO) -> dict[str, Any]:
    """Next-token training with AdamW for about `minutes` of wall time."""
    import torch

    train = torch.from_numpy(train_np.astype(np.int64))
    per_step = _seconds_per_lm_step(model, train, spec)
    steps = max(2, int(minutes * 60 / per_step))
    log.info("LM: %.3f s/step (%.0f tokens/s) -> %d steps for %.1f min",
             per_step, spec.lm_batch * spec.n_ctx / per_step, steps, minutes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lm_lr, betas=(0.9, 0.95),
                                  weight_decay=0.1)
    warmup = min(spec.lm_warmup, max(1, steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, steps, warmup))
    batches, every, recent = _batches(len(train), spec.lm_batch, seed), max(1, steps // 20), []
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        recent.append(_lm_step(model, optimizer, train[next(batches)]))
        schedule.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            log.log(progress, "LM step %d/%d  loss %.3f  %.0f s", step + 1, steps,
                    sum(recent) / len(recent), time.perf_counter() - start)
            recent.clear()
    model.eval()
    wall = time.perf_counter() - start
    return {"lm_train_steps": steps, "lm_train_tokens": steps * spec.lm_batch * spec.n_ctx,
            "lm_train_wall_s": round(wall, 1)}


# --------------------------------------------------------------------------------------------
# SAE training (sae_lens' own runner)


def sae_runner_config(spec: DemoSpec, bos_id: int, training_tokens: int, seed: int) -> Any:
    """The sae_lens configuration. Notes on the choices:

    - TopK with AuxK: L0 is set directly and dead latents are revived, which on a short CPU budget
      is far more reliable than tuning an L1 coefficient;
    - BOS positions are excluded (`exclude_special_tokens`): their huge-norm residuals are not
      features, and the build excludes them from every statistic too;
    - activations are normalised to a fixed average norm while training (folded into the weights at
      the end), so the learning rate does not depend on the model's residual scale.
    """
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig, TopKTrainingSAEConfig

    steps = training_tokens // spec.sae_batch_tokens
    sae_cfg = TopKTrainingSAEConfig(
        d_in=spec.d_model, d_sae=spec.d_sae, k=spec.sae_k, dtype="float32", device="cpu",
        normalize_activations="expected_average_only_in",
    )
    return LanguageModelSAERunnerConfig(
        sae=sae_cfg, model_name=DEMO_MODEL_NAME, hook_name=spec.hook_name,
        dataset_path="python-stdlib", streaming=False, is_dataset_tokenized=True,
        context_size=spec.n_ctx, prepend_bos=False, exclude_special_tokens=[bos_id],
        n_batches_in_buffer=spec.sae_buffer_batches, store_batch_size_prompts=spec.sae_store_batch,
        train_batch_size_tokens=spec.sae_batch_tokens, training_tokens=training_tokens,
        model_from_pretrained_kwargs={}, lr=spec.sae_lr,
        lr_warm_up_steps=min(100, steps // 20), lr_decay_steps=steps // 5,
        dead_feature_window=spec.sae_dead_window, feature_sampling_window=max(1, steps),
        n_batches_for_norm_estimate=spec.sae_norm_batches, device="cpu", seed=seed,
        logger=LoggingConfig(log_to_wandb=False), checkpoint_path=None, output_path=None,
        verbose=False,
    )


def _sae_tokens_per_s(model: HookedTransformer, train: np.ndarray, spec: DemoSpec,
                      bos_id: int) -> float:
    """Measure the two costs of one SAE training batch on this machine: the LM forward that makes
    the activations, and a real sae_lens training step on them."""
    import torch
    from sae_lens import TrainingSAE
    from sae_lens.training.sae_trainer import SAETrainer

    cfg = sae_runner_config(spec, bos_id, 100 * spec.sae_batch_tokens, 0)
    rows = max(1, math.ceil(spec.sae_batch_tokens / spec.n_ctx))
    tokens = torch.from_numpy(train[:rows].astype(np.int64))
    with torch.no_grad():
        for _ in range(2):  # the first call pays one-off costs; time the second
            start = time.perf_counter()
            _, cache = model.run_with_cache(tokens, names_filter=[spec.hook_name],
                                            stop_at_layer=spec.hook_layer + 1)
    lm_s = (time.perf_counter() - start) / (rows * spec.n_ctx) * spec.sae_batch_tokens
    acts = cache[spec.hook_name].reshape(-1, spec.d_model)[: spec.sae_batch_tokens]
    sae = TrainingSAE.from_dict(cfg.get_training_sae_cfg_dict())
    trainer = SAETrainer(cfg=cfg.to_sae_trainer_config(), sae=sae, data_provider=iter(()))
    trainer.step(acts)  # warm-up
    start, n = time.perf_counter(), 5
    for _ in range(n):
        trainer.step(acts)
    sae_s = (time.perf_counter() - start) / n
    return spec.sae_batch_tokens / (lm_s + sae_s)


def train_sae(model: HookedTransformer, train: np.ndarray, spec: DemoSpec, minutes: float,
              seed: int, quiet: bool) -> tuple[Any, dict[str, Any]]:
    """Train the SAE with `LanguageModelSAETrainingRunner` for about `minutes` of wall time.
    Returns the trained sae_lens TrainingSAE and the run's numbers."""
    import datasets
    import torch
    from sae_lens import LanguageModelSAETrainingRunner

    bos_id = _bos_id(model)
    rate = _sae_tokens_per_s(model, train, spec, bos_id)
    # 0.7: buffer refills, mixing and the AuxK loss (once latents die) cost more than the
    # measured steps; the factor was read off full-size runs
    steps = max(2, int(0.7 * minutes * 60 * rate / spec.sae_batch_tokens))
    training_tokens = steps * spec.sae_batch_tokens
    log.info("SAE: %.0f tokens/s -> %d steps (%.2fM tokens) for %.1f min",
             rate, steps, training_tokens / 1e6, minutes)
    dataset = datasets.Dataset.from_dict({"input_ids": train.tolist()})
    cfg = sae_runner_config(spec, bos_id, training_tokens, seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    with _quiet_sae_lens(quiet):
        runner = LanguageModelSAETrainingRunner(cfg, override_model=model,
                                                override_dataset=dataset)
        sae = runner.run()
    wall = time.perf_counter() - start
    log.info("SAE: trained in %.0f s", wall)
    return sae, {"sae_train_steps": steps, "sae_train_tokens": training_tokens,
                 "sae_train_wall_s": round(wall, 1)}


@contextlib.contextmanager
def _quiet_sae_lens(quiet: bool) -> Iterator[None]:
    """Silence what is noise here: warnings that a pre-tokenized dataset has fewer rows than
    training tokens (rows are sequences), that an epoch ended (several are expected) and sae_lens'
    internal tensor copy, and, when quiet, sae_lens' progress bar on stderr."""
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.filterwarnings("ignore", message="The training dataset contains fewer samples")
        warnings.filterwarnings("ignore", message="All samples in the training dataset have")
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        if quiet:
            devnull = stack.enter_context(open(os.devnull, "w"))
            stack.enter_context(contextlib.redirect_stderr(devnull))
        yield


def save_sae(sae: Any, path: Path) -> None:
    """The inference SAE as `cfg.json` + `sae_weights.safetensors`, what `SAE.load_from_disk`
    reads (sae_lens folds the TopK decoder norms into the weights here)."""
    sae.save_inference_model(str(path))


# --------------------------------------------------------------------------------------------
# Evaluation on held-out sequences


@dataclass
class _Sums:
    """Running totals over held-out batches; all statistics skip BOS positions, as the build does."""

    loss_clean: float = 0.0
    loss_sae: float = 0.0
    loss_zero: float = 0.0
    n_pred: int = 0
    n_tok: int = 0
    active: float = 0.0
    sse: float = 0.0
    sum_x: Any = 0.0
    sum_sq: float = 0.0
    ever: Any = None


def _splice(fn: Callable[[torch.Tensor], torch.Tensor], mask: torch.Tensor) -> Callable:
    """A hook replacing the activation by `fn(activation)` at non-BOS positions only."""
    import torch

    def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
        return torch.where(mask[..., None], fn(act), act)

    return hook


def _token_losses(model: HookedTransformer, tokens: torch.Tensor, hook: str,
                  fn: Callable) -> torch.Tensor:
    """Next-token loss at every position with `fn` hooked in at `hook`."""
    import torch

    losses = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                                  fwd_hooks=[(hook, fn)])
    assert isinstance(losses, torch.Tensor)
    return losses


def _eval_batch(model: HookedTransformer, sae: SAE, tokens: torch.Tensor, bos_id: int,
                sums: _Sums) -> None:
    """Clean, SAE-spliced and zero-ablated next-token loss, and reconstruction statistics."""
    import torch

    hook, mask = sae.cfg.metadata.hook_name, tokens != bos_id
    loss, cache = model.run_with_cache(tokens, return_type="loss", loss_per_token=True,
                                       names_filter=[hook])
    assert isinstance(loss, torch.Tensor)
    x = cache[hook][mask].double()
    acts = sae.encode(x.float())
    recon = sae.decode(acts).double()
    spliced = _token_losses(model, tokens, hook, _splice(sae, mask))
    zero = _token_losses(model, tokens, hook, _splice(torch.zeros_like, mask))
    sums.loss_clean += float(loss.sum())
    sums.loss_sae += float(spliced.sum())
    sums.loss_zero += float(zero.sum())
    sums.n_pred += loss.numel()
    sums.n_tok += len(x)
    sums.active += float((acts > 0).sum())
    sums.sse += float(((x - recon) ** 2).sum())
    sums.sum_x = sums.sum_x + x.sum(0)
    sums.sum_sq += float((x**2).sum())
    fired = (acts > 0).any(0)
    sums.ever = fired if sums.ever is None else sums.ever | fired


def evaluate(model: HookedTransformer, sae: SAE, heldout: np.ndarray,
             batch: int) -> dict[str, Any]:
    """Metrics of the saved artifacts on the held-out sequences (never trained on)."""
    import torch

    bos_id, sums = _bos_id(model), _Sums()
    with torch.no_grad():
        for start in range(0, len(heldout), batch):
            rows = torch.from_numpy(heldout[start:start + batch].astype(np.int64))
            _eval_batch(model, sae, rows, bos_id, sums)
    total_var = sums.sum_sq - float((sums.sum_x**2).sum()) / sums.n_tok
    clean, spliced, zero = (s / sums.n_pred for s in (sums.loss_clean, sums.loss_sae,
                                                       sums.loss_zero))
    return {
        "lm_heldout_loss": round(clean, 4),
        "sae_l0": round(sums.active / sums.n_tok, 2),
        "sae_explained_variance": round(1 - sums.sse / total_var, 4),
        "sae_dead_fraction": round(1 - float(sums.ever.float().mean()), 4),
        "sae_ce_loss_clean": round(clean, 4),
        "sae_ce_loss_spliced": round(spliced, 4),
        "sae_ce_loss_zero_ablation": round(zero, 4),
        "sae_ce_loss_recovered": round((zero - spliced) / (zero - clean), 4),
        "heldout_tokens": sums.n_tok,
    }


# --------------------------------------------------------------------------------------------
# Entry point


DEFAULT_OUT = Path("demo-artifacts")
"""in the current folder: the embedded demo (DEMO_DIR) is only replaced when asked by name."""


def check_demo_options(out_dir: Path, lm_minutes: float, sae_minutes: float) -> Path:
    """Refuse, in one line and before any training, an output folder that is not new, empty or
    a previous demo-train output, and budgets that are not positive; `out_dir` resolved."""
    for flag, minutes in (("--lm-minutes", lm_minutes), ("--sae-minutes", sae_minutes)):
        if not minutes > 0 or minutes == float("inf"):
            raise UserError(f"{flag} {minutes} is not a training budget; pass a positive number "
                            f"of minutes, e.g. {flag} 5")
    resolved = check_output("--out", out_dir, DEMO)
    check_writable("--out", resolved)
    return resolved


def train_demo(out_dir: Path = DEFAULT_OUT, seed: int = 0, lm_minutes: float = 10,
               sae_minutes: float = 8, quiet: bool = False,
               spec: DemoSpec = DemoSpec()) -> dict[str, Any]:
    """Train tokenizer, model and SAE, save them under `out_dir` (model/, sae/, metrics.json) and
    return the metrics. `out_dir` is replaced only once everything has succeeded, and only if
    it is new, empty or a previous output of this function (files added to it are kept)."""
    out_dir = check_demo_options(out_dir, lm_minutes, sae_minutes)
    import torch

    torch.set_num_threads(spec.threads)
    with atomic_dir(out_dir, DEMO.names) as stage:
        metrics = _train_into(stage, seed, lm_minutes, sae_minutes, quiet, spec)
    log.info("demo written to %s: %s", out_dir, json.dumps(metrics, sort_keys=True))
    log.info("build with it: feature-browser build --model %s --sae %s", out_dir / "model",
             out_dir / "sae")
    return metrics


def _train_into(stage: Path, seed: int, lm_minutes: float, sae_minutes: float, quiet: bool,
                spec: DemoSpec) -> dict[str, Any]:
    """The whole pipeline, writing into the staging folder `stage`."""
    from sae_lens import SAE

    progress = logging.DEBUG if quiet else logging.INFO
    start = time.perf_counter()
    tokenizer = save_tokenizer(train_tokenizer(spec.vocab_size), stage / "model")
    log.info("tokenizer: %d tokens in %.0f s", len(tokenizer), time.perf_counter() - start)
    train, heldout, n_docs = build_sequences(tokenizer, spec, seed)
    config = model_config(spec, len(tokenizer), seed)
    model = build_model(config, tokenizer)
    lm_stats = train_lm(model, train, spec, lm_minutes, seed, progress)
    save_model_dir(model, tokenizer, stage / "model", config)
    model = load_model_dir(stage / "model")  # train the SAE on the float16-rounded weights we ship
    sae, sae_stats = train_sae(model, train, spec, sae_minutes, seed, quiet)
    save_sae(sae, stage / "sae")
    metrics = evaluate(model, SAE.load_from_disk(str(stage / "sae")), heldout, spec.eval_batch)
    metrics.update(lm_stats, **sae_stats, **_run_info(spec, seed, len(train), len(heldout),
                                                       n_docs, time.perf_counter() - start))
    (stage / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def _run_info(spec: DemoSpec, seed: int, n_train: int, n_heldout: int, n_docs: int,
              wall: float) -> dict[str, Any]:
    return {
        "seed": seed, "python_version": platform.python_version(), "corpus_documents": n_docs,
        "train_sequences": n_train, "heldout_sequences": n_heldout,
        "hook_name": spec.hook_name, "sae_architecture": "topk", "spec": asdict(spec),
        "total_wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m generator.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default: {DEFAULT_OUT}; the embedded demo: "
                             "generator/demo/artifacts)")
    parser.add_argument("--lm-minutes", type=float, default=10, help="LM training budget")
    parser.add_argument("--sae-minutes", type=float, default=8, help="SAE training budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no per-step progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train_demo(args.out, args.seed, args.lm_minutes, args.sae_minutes, args.quiet)


if __name__ == "__main__":
    main()

