"""The compute engine: drives the model + SAE over the corpus in batches and folds every batch into
the streaming statistics, then re-runs the shown examples for per-token activations and ablation.

    pass 1 -> Pass1State    (all sequences)
    pass 2 -> Pass2State    (all sequences, needs pass 1's max)
    examples + ablation     (only the sequences that some latent shows)

The sequences are cut into a global grid of batches (`plan`) that does not depend on the number
of processes; each rank (torchrun) runs its contiguous block of the grid, in all three stages. So
every batch is one the single-process run would have run, the model computes the same bits, and
the states merge exactly (generator.compute.distributed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from generator.compute.activations import HookedSAE
from generator.compute.checkpoint import Checkpoint, as_tensors
from generator.compute.distributed import Ranks
from generator.compute.statistics import Pass1State, Pass2State, SparseBatch, first_positions
from generator.store.schema import EXAMPLE_INTERVAL, EXAMPLE_TOP, Examples, SharedRows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """The subset of BuildConfig the engine needs."""

    k: int = 20
    n_bins: int = 50
    n_intervals: int = 10
    m: int = 5
    seed: int = 0
    batch_size: int = 0
    """sequences per forward pass; 0 = pick from free memory."""
    ablation: bool = True
    top_tokens: bool = True
    coact: bool = True
    """count co-activations of all latent pairs (exact, held sparsely)."""
    quiet: bool = False
    cache_bytes: int = 2 << 30
    """host memory for pass 1's activation triplets, reused by pass 2 (beyond it: recompute)."""
    coact_bytes: int = 4 << 30
    """host memory (on GPU: a quarter of free memory) for exact co-activation counts of all latent
    pairs; beyond it each latent keeps its `coact_keep` most frequent partners as candidates."""
    coact_keep: int = 64
    encode_rows: int = 0
    """positions the SAE encodes at once; 0 = from the memory budget (see Engine.encode_rows)."""
    clean_loss: bool = False
    """pass 1 also runs the model past the hook for each position's clean next-token loss (the
    corpus view's): kept with the batch's entries (SparseBatch.loss), so entries_of gives both
    and no sequence is run twice. The corpus view keeps every sequence that one of the
    d_sae x (k + samples) shown examples points to, which is nearly the whole corpus (all of
    the demo's), so computing it for every sequence costs less than a second run to the hook."""


@dataclass(frozen=True)
class ExampleSet:
    """Shown examples with their per-token activations and (optionally) ablation Δloss."""

    examples: Examples
    abl_mean: Float[np.ndarray, " d_sae"] | None
    abl_frac_helped: Float[np.ndarray, " d_sae"] | None


class Engine:
    def __init__(self, hooked: HookedSAE, tokens: Int[np.ndarray, "n_seqs ctx"], bos_id: int,
                 settings: EngineSettings, ranks: Ranks | None = None):
        self.hooked = hooked
        self.tokens = tokens
        self.bos_id = bos_id
        self.s = settings
        self.device = hooked.device
        self.ranks = ranks or Ranks(device=str(self.device))
        self.batch_size = settings.batch_size or self._agreed(self._auto_batch_size())
        self.plan: list[np.ndarray] = []
        """this rank's batches of the global grid (set by pass 1, reused by pass 2 and examples)."""
        self._cache: dict[int, list[SparseBatch]] = {}
        """pass 1's activation triplets of plan batch i, on the host, while within budget."""
        self.batches: list[np.ndarray] = []
        """every rank's batches: the global grid (the plan is this rank's block of it)."""
        self._block = range(0)
        """the plan's indices in the global grid."""
        self.grid: tuple[int, int] = (0, 0)
        """(first batch size, batch size) the plan was cut with: saved, so a resume cuts it again."""
        self.checkpoint: Checkpoint | None = None
        self.carried: dict[str, object] = {}
        """what every checkpoint holds besides the stage's own state (finished stages' states)."""
        self.batches_run = 0
        """plan batches computed by this process (a resumed build does not redo saved ones)."""

    def _tick(self, stage: str, done: int, content: Callable[[], dict[str, object]]) -> None:
        if self.checkpoint is not None:
            self.checkpoint.tick(stage, done, lambda: {**self.carried, **content(),
                                                       "grid": list(self.grid)})

    def save_boundary(self, stage: str) -> None:
        """A checkpoint at the start of `stage`, written by every rank right after the collective
        that ends the previous stage, so that all ranks resume from the same stage."""
        if self.checkpoint is not None:
            self.checkpoint.write({**self.carried, "grid": list(self.grid), "stage": stage,
                                   "done": 0})

    def restore_plan(self, seqs: np.ndarray, grid: list[int]) -> None:
        """The plan of a resumed build, cut as the interrupted one was."""
        first, self.batch_size = int(grid[0]), int(grid[1])
        self.grid = (first, self.batch_size)
        self.plan = self._grid(seqs, first)

    def _agreed(self, batch_size: int) -> int:
        """The smallest rank's figure, so that every rank cuts the same grid."""
        return int(self.ranks.min_(torch.tensor([batch_size], device=self.ranks.device)))

    # ------------------------------------------------------------------ batching

    def _budget(self, fraction: float, cpu_bytes: int) -> int:
        """Bytes a stage may use for its temporaries: a fraction of free GPU memory, or a fixed
        amount of host memory."""
        if self.device.type == "cuda":
            return int(torch.cuda.mem_get_info(self.device)[0] * fraction)
        return cpu_bytes

    def _auto_batch_size(self) -> int:
        """Sequences per forward pass. The SAE encodes a batch in chunks of positions
        (`encode_rows`), so a batch costs the model's activations up to the hook (~32 floats
        of d_model per token, generous for attention and MLP temporaries) plus per-sequence
        maxima (4 x d_sae floats), not ctx x d_sae."""
        ctx, d_model = self.tokens.shape[1], self.hooked.model.cfg.d_model
        per_seq = ctx * d_model * 4 * 32 + self.hooked.d_sae * 4 * 4
        return int(max(1, min(1024, self._budget(0.3, 1 << 30) // per_seq)))

    @property
    def encode_rows(self) -> int:
        """Positions encoded at once: the SAE's dense [positions, d_sae] output and its
        temporaries (~4 copies in float32) stay within the budget."""
        if self.s.encode_rows:
            return self.s.encode_rows
        return int(max(1, self._budget(0.2, 256 << 20) // (self.hooked.d_sae * 4 * 4)))

    def _grid(self, seqs: np.ndarray, first: int = 0) -> list[np.ndarray]:
        """The global batches of `seqs`: an optional first batch of `first`, then batch_size each;
        this rank keeps its contiguous block of them."""
        cuts = [0, first] if first else [0]
        cuts += list(range(cuts[-1] + self.batch_size, len(seqs), self.batch_size)) + [len(seqs)]
        self.batches = [seqs[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
        self._block = self.ranks.block(len(self.batches))
        return [self.batches[i] for i in self._block]

    def _progress(self, desc: str) -> Iterator[tuple[int, np.ndarray]]:
        """(plan index, batch) over this rank's plan, with a progress bar in sequences."""
        total = sum(len(b) for b in self.plan)
        bar = tqdm(total=total, desc=desc, unit="seq", disable=self.s.quiet, leave=False)
        for i, batch in enumerate(self.plan):
            yield i, batch
            bar.update(len(batch))
        bar.close()

    def _parts(self, batch: np.ndarray) -> Iterator[np.ndarray]:
        """A plan batch in pieces of the current batch size (smaller only after an out-of-memory
        halving)."""
        for start in range(0, len(batch), self.batch_size):
            yield batch[start:start + self.batch_size]

    def _with_oom_retry(self, step: Callable[[np.ndarray], None], seqs: np.ndarray) -> None:
        """Run one batch; on GPU out-of-memory, halve the batch size, say so, and go on.
        Steps only commit state after their allocations succeed, so a retry never double-counts."""
        try:
            step(seqs)
        except torch.OutOfMemoryError:
            if len(seqs) == 1:
                raise
            torch.cuda.empty_cache()
            self.batch_size = max(1, len(seqs) // 2)
            log.warning("GPU out of memory: batch size halved to %d", self.batch_size)
            for part in (seqs[: self.batch_size], seqs[self.batch_size:]):
                self._with_oom_retry(step, part)

    def _device_tokens(self, seqs: np.ndarray) -> Tensor:
        return torch.from_numpy(self.tokens[seqs]).to(self.device, torch.long)

    def _sparse(self, batch: np.ndarray, bos: bool = False, loss: bool = False) -> SparseBatch:
        """The batch's active entries, ordered by position then latent (see _encode_sparse);
        with `loss`, also each position's clean loss (SparseBatch.loss), from the hook's block
        on: the model after the hook's activations for the batch, and one block of logits."""
        tokens = self._device_tokens(batch)
        resid, hook_acts = self.hooked.run_to_hook(tokens)
        mask = self.hooked.included(tokens, hook_acts, self.bos_id)
        out = self._encode_sparse(batch, tokens, mask, hook_acts, bos=bos)
        if not loss:
            return out
        clean = self.hooked.losses(resid, tokens, needed=mask[:, 1:])
        last = torch.full((len(tokens), 1), float("nan"), device=clean.device)
        return replace(out, loss=torch.cat([clean, last], 1).float())

    def _encode_sparse(self, batch: np.ndarray, tokens: Tensor, mask: Tensor,
                       hook_acts: Tensor, bos: bool = False) -> SparseBatch:
        """The SAE encodes the included positions (`mask`: HookedSAE.included), `encode_rows` at
        a time, so no [batch, ctx, d_sae] array is ever held; with `bos` (pass 1), also the BOS
        positions (one per sequence plus document separators), whose active entries feed only
        the BOS totals, and each entry says whether it is at a first position (right after a
        BOS). A sequential SAE encodes each sequence once for both (its codes need the whole
        sequence whichever positions are kept). Memory:
        encode_rows x d_sae x 16 bytes + 36 bytes per active entry."""
        not_bos = tokens != self.bos_id
        both = bos and self.hooked.sequential
        rows, cols = torch.nonzero(mask | ~not_bos if both else mask, as_tuple=True)
        idx, latent, value = self._encode_at(hook_acts, rows, cols)
        if both:  # split the entries at BOS positions off (mask never holds one)
            at_bos = ~not_bos[rows[idx], cols[idx]]
            bos_latent, bos_value = latent[at_bos], value[at_bos]
            idx, latent, value = idx[~at_bos], latent[~at_bos], value[~at_bos]
        out = SparseBatch(rows[idx], cols[idx], latent, value, tokens[rows[idx], cols[idx]],
                          torch.from_numpy(batch).to(self.device).long(), tokens.shape[1],
                          int(mask.sum()))
        if not bos:
            return out
        if not both:
            _, bos_latent, bos_value = self._encode_at(hook_acts,
                                                       *torch.nonzero(~not_bos, as_tuple=True))
        return replace(out, first=first_positions(not_bos)[out.row, out.col],
                       bos_latent=bos_latent, bos_value=bos_value)

    def _encode_at(self, hook_acts: Tensor, rows: Tensor,
                   cols: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(index into rows, latent, value) of the active entries of the SAE's encoding of the
        positions (rows[j], cols[j]), ordered by position then latent."""
        parts = []
        for start, acts in self.hooked.encode_at(hook_acts, rows, cols, self.encode_rows):
            idx, latent = torch.nonzero(acts > 0, as_tuple=True)
            parts.append((idx + start, latent, acts[idx, latent].float()))
        idx = torch.cat([p[0] for p in parts]) if parts else rows[:0]
        latent = torch.cat([p[1] for p in parts]) if parts else rows[:0]
        value = torch.cat([p[2] for p in parts]) if parts else torch.zeros(0, device=self.device)
        return idx, latent, value

    # ------------------------------------------------------------------ passes

    def pass1(self, seqs: np.ndarray) -> Pass1State:
        """This rank's share of pass 1 (combine the ranks' states with
        distributed.combine_pass1). Keeps each batch's triplets on the host while they fit the
        cache budget, for pass 2, the examples and the corpus view. Memory: Pass1State's
        formula + the cache (<= cache_bytes, 18 bytes per active entry, + 4 per position with
        clean_loss) + one batch (see _encode_sparse; with clean_loss, _sparse's)."""
        saved = self.checkpoint.resumes("pass1") if self.checkpoint else None
        if saved is not None:
            return self._pass1_from(seqs, Pass1State.from_state_dict(saved["p1"], self.device),
                                    saved["grid"], int(saved["done"]))
        d_vocab = self.hooked.model.cfg.d_vocab if self.s.top_tokens else 0
        state = Pass1State.empty(self.hooked.d_sae, self.s.k, self.device, d_vocab=d_vocab,
                                 coact=self.s.coact)
        # the co-activation valve: its state is 16 bytes per pair, a fold needs ~3x that again
        state.coact_keep = self.s.coact_keep
        state.coact_max_pairs = max(self._budget(0.25, self.s.coact_bytes) // 64,
                                    4 * state.coact_keep * self.hooked.d_sae)
        if state.coact is not None:  # fold at least every quarter budget, so the check can fire
            state.coact.min_fold = min(state.coact.min_fold, state.coact_max_pairs // 4)
        # a probe: the SAE's L0, measured on the first global batch (rank 0), sizes the batches
        first = min(4, len(seqs)) if self.s.coact and not self.s.batch_size else 0
        if first:
            if self.ranks.main:
                probe = self._sparse(seqs[:first])
                self.batch_size = min(self.batch_size, self._pair_batch(probe))
            self.batch_size = int(self.ranks.broadcast_(
                torch.tensor([self.batch_size], device=self.ranks.device)))
        self.grid = (first, self.batch_size)
        self.plan = self._grid(seqs, first)
        return self._pass1_from(seqs, state, list(self.grid), 0)

    def _pass1_from(self, seqs: np.ndarray, state: Pass1State, grid: list[int],
                    start: int) -> Pass1State:
        """Pass 1 over this rank's plan batches from `start` on, into `state`."""
        self.restore_plan(seqs, grid)
        self._cache = {}
        cached_bytes = 0
        current = 0

        def step(batch: np.ndarray) -> None:
            nonlocal cached_bytes
            sparse = self._sparse(batch, bos=True, loss=self.s.clean_loss)
            state.update(sparse)
            cached_bytes += sparse.compact_nbytes
            if cached_bytes <= self.s.cache_bytes:
                self._cache.setdefault(current, []).append(sparse.compact())
            elif cached_bytes - sparse.compact_nbytes <= self.s.cache_bytes:
                log.info("activation cache over %d MB: later batches are re-run in pass 2",
                         self.s.cache_bytes >> 20)

        for current, batch in self._progress("pass 1/2 statistics"):
            if current < start:
                continue
            for part in self._parts(batch):
                self._with_oom_retry(step, part)
            self.batches_run += 1
            self._tick("pass1", current + 1, lambda: {"p1": state.state_dict()})
        return state

    def _pair_batch(self, sparse: SparseBatch) -> int:
        """Sequences per batch such that one batch's co-active pairs (Σ L(L-1)/2 per position,
        held coalesced at ~16 bytes each until the batch commits) stay within the budget; L0 is
        measured on the batch just seen (compacted or not)."""
        n_seqs = max(1, len(sparse.seq_ids))
        l0 = len(sparse.latent) / max(1, sparse.n_included)
        pairs_per_seq = sparse.n_included / n_seqs * l0 * max(l0 - 1, 0) / 2
        return int(max(1, self._budget(0.1, 256 << 20) // max(1.0, 16 * pairs_per_seq)))

    def pass2(self, max_act: Tensor, coact_keys: Tensor | None = None) -> Pass2State:
        """This rank's share of pass 2, over pass 1's plan (combine with
        distributed.combine_pass2): from pass 1's cached triplets where kept, else by re-running
        the same batch. coact_keys: candidate co-active pairs to recount exactly (when pass 1's
        valve fired). Memory: Pass2State (d_sae x (n_bins + n_intervals x (1 + m)) x 8 bytes,
        + 16 bytes per candidate pair) + one batch."""
        saved = self.checkpoint.resumes("pass2") if self.checkpoint else None
        if saved is not None and saved.get("p2_partial") is not None:
            state = Pass2State.from_state_dict(saved["p2_partial"], self.device)
        else:
            state = Pass2State.empty(max_act.to(self.device), self.s.n_bins, self.s.n_intervals,
                                     self.s.m, self.s.seed, coact_keys=coact_keys)
        start = int(saved["done"]) if saved is not None else 0
        for i, batch in self._progress("pass 2/2 histograms"):
            if i < start:
                continue
            if i in self._cache:
                for sparse in self._cache[i]:
                    state.update(sparse.widen(self.device))
            else:
                for part in self._parts(batch):
                    self._with_oom_retry(lambda b: state.update(self._sparse(b)), part)
            self.batches_run += 1
            self._tick("pass2", i + 1, lambda: {"p2_partial": state.state_dict()})
        return state

    def entries_of(self, seqs: Int[np.ndarray, " n"]) -> Iterator[SparseBatch]:
        """The active entries (and, with clean_loss, the losses) of the (ascending) sequences
        `seqs` as pass 1 computed them, batch by batch in sequence order, compacted: from pass
        1's cache where it kept the batch, else the global batch re-run whole (its bits do not
        depend on which process asks). Entries of other sequences in those batches are left in:
        the caller selects."""
        for g, batch in enumerate(self.batches):
            lo, hi = np.searchsorted(seqs, [batch[0], batch[-1] + 1])
            if hi == lo:
                continue
            cached = self._cache.get(g - self._block.start) if g in self._block else None
            if cached is None:
                cached = [self._sparse(part, loss=self.s.clean_loss).compact()
                          for part in self._parts(batch)]
            yield from cached

    # ------------------------------------------------------------------ examples

    def examples(self, p1: Pass1State, p2: Pass2State) -> ExampleSet | None:
        """Per-token activations (and Δloss) of every shown example, from the combined states;
        this rank computes the examples in its plan batches, rank 0 gathers them all (None on the
        other ranks). A (sequence, latent) pair shown twice (top example and interval sample) is
        computed once. Activations are pass 1's triplets of the same batch (cached, or the batch
        re-run), so they are the bits the statistics saw.
        Memory: P distinct (sequence, latent) pairs of the E shown examples (P <= E <= d_sae x
        (k + n_intervals x m)) hold P x ctx x 4 bytes of activations, twice that with ablation
        (examples share their pair's row: SharedRows); per batch, the
        model's activations for one plan batch and `_ablation_chunk` ablated re-runs."""
        sel = select_examples(p1.top_seqs.cpu().numpy(), p2.sample_seqs().cpu().numpy())
        d, ctx = self.hooked.d_sae, self.tokens.shape[1]
        pairs, inverse = np.unique(sel.seq.astype(np.int64) * d + sel.latent, return_inverse=True)
        pair_seq = pairs // d  # sorted by sequence
        acts = np.zeros((len(pairs), ctx), dtype=np.float32)
        dloss = np.full((len(pairs), ctx), np.nan, dtype=np.float32) if self.s.ablation else None
        saved = self.checkpoint.resumes("examples") if self.checkpoint else None
        start = int(saved["done"]) if saved is not None else 0
        if saved is not None and saved.get("acts") is not None:
            acts[:] = saved["acts"].numpy()
            if dloss is not None:
                dloss[:] = saved["dloss"].numpy()
        desc = "examples + ablation" if self.s.ablation else "examples"
        for i, batch in self._progress(desc):
            if i < start:
                continue

            def step(part: np.ndarray, i: int = i) -> None:
                self._example_batch(i, part, pairs, pair_seq, acts, dloss)

            for part in self._parts(batch):
                lo, hi = np.searchsorted(pair_seq, [part[0], part[-1] + 1])
                if hi > lo:
                    self._with_oom_retry(step, part)
            self.batches_run += 1
            self._tick("examples", i + 1, lambda: {"acts": as_tensors(acts),
                                                   "dloss": as_tensors(dloss)})
        mine = (range(*np.searchsorted(pair_seq, [self.plan[0][0], self.plan[-1][-1] + 1]))
                if self.plan else range(0))
        for array in (acts, dloss):
            if array is not None:
                self.ranks.rows_to_main(array, mine)
        if not self.ranks.main:
            return None
        summary = (ablation_summary((pairs % d).astype(np.int64), acts, dloss, d)
                   if dloss is not None else None)
        examples = Examples(latent=sel.latent, kind=sel.kind, interval=sel.interval,
                            rank=sel.rank, seq=sel.seq, acts=SharedRows(acts, inverse),
                            dloss=SharedRows(dloss, inverse) if dloss is not None else None)
        return ExampleSet(examples, *(summary or (None, None)))

    def _example_batch(self, index: int, batch: np.ndarray, pairs: Int[np.ndarray, " P"],
                       pair_seq: Int[np.ndarray, " P"], acts_out: np.ndarray,
                       dloss_out: np.ndarray | None) -> None:
        """Fill acts_out and dloss_out for the pairs whose sequence is in `batch` (a contiguous
        range of sequences, part of plan batch `index`); pairs are keyed seq * d_sae + latent,
        sorted, and pair_seq is their sequence."""
        d = self.hooked.d_sae
        lo, hi = np.searchsorted(pair_seq, [batch[0], batch[-1] + 1])
        rows = np.arange(lo, hi)
        cached = self._cache.get(index)
        resid = tokens = mask = None
        if cached is None or dloss_out is not None:
            tokens = self._device_tokens(batch)
            resid, hook_acts = self.hooked.run_to_hook(tokens)
            mask = self.hooked.included(tokens, hook_acts, self.bos_id)
            if cached is None:
                cached = [self._encode_sparse(batch, tokens, mask, hook_acts).compact()]
        _fill_from_cache(cached, pairs[lo:hi], d, acts_out[lo:hi])
        if dloss_out is None:
            return
        assert resid is not None and tokens is not None and mask is not None
        kept, local = np.unique(pair_seq[rows] - batch[0], return_inverse=True)
        kept_t = torch.from_numpy(kept).to(self.device)
        self._ablate(resid[kept_t], tokens[kept_t], mask[kept_t],
                     torch.from_numpy(local).to(self.device),
                     torch.from_numpy(pairs[rows] % d).to(self.device, torch.long),
                     torch.from_numpy(acts_out[rows]).to(self.device), rows, dloss_out)

    def _ablate(self, resid: Tensor, tokens: Tensor, mask: Tensor, local: Int[Tensor, " pairs"],
                latents: Int[Tensor, " pairs"], pair_acts: Float[Tensor, "pairs ctx"],
                rows: np.ndarray, dloss_out: np.ndarray) -> None:
        """Δloss at every position of each (sequence, latent) pair: the latent removed from the
        hook at every non-BOS position, minus the clean loss. `local` indexes the pair's
        sequence in resid / tokens (the batch's kept sequences)."""
        target_ok = mask[:, 1:]
        chunk = self._ablation_chunk()
        clean = torch.cat([self.hooked.losses(resid[c:c + chunk], tokens[c:c + chunk],
                                              needed=target_ok[c:c + chunk])
                           for c in range(0, len(tokens), chunk)])
        # Causal attention: positions before the latent's first activation see the same inputs in
        # both runs, so their Δloss is exactly 0 and only later positions are unembedded.
        ctx = tokens.shape[1]
        positions = torch.arange(ctx - 1, device=self.device)
        first = torch.where(pair_acts > 0, torch.arange(ctx, device=self.device), ctx).amin(1)
        for start in range(0, len(rows), chunk):
            sl = slice(start, start + chunk)
            seq = local[sl]
            after = positions[None, :] >= first[sl, None]
            delta = pair_acts[sl, :, None] * self.hooked.decoder_rows(latents[sl])[:, None, :]
            ablated = self.hooked.losses(resid[seq], tokens[seq], delta,
                                         needed=after & target_ok[seq])
            diff = torch.where(after, ablated - clean[seq], 0.0)
            diff = torch.where(target_ok[seq], diff, float("nan"))
            dloss_out[rows[sl], :-1] = diff.cpu().numpy()

    def _ablation_chunk(self) -> int:
        """(sequence, latent) pairs per ablation forward pass. On CPU, small chunks keep each
        layer's activations in cache (the work is memory-bound there); on GPU, large chunks keep
        the device busy, bounded by free memory (unembedding runs in blocks of its own)."""
        if self.device.type != "cuda":
            return 32
        ctx, d_model = self.tokens.shape[1], self.hooked.model.cfg.d_model
        d_mlp = self.hooked.model.cfg.d_mlp or 4 * d_model
        per_pair = ctx * (8 * d_model + 2 * d_mlp) * 4
        free = torch.cuda.mem_get_info(self.device)[0]
        return int(max(1, min(4096, free * 0.3 // per_pair)))


def _fill_from_cache(cache: list[SparseBatch], pairs: Int[np.ndarray, " n"], d: int,
                     acts: Float[np.ndarray, "n ctx"]) -> None:
    """Per-token activations of each (sequence, latent) pair, keyed seq * d + latent and sorted,
    read from pass 1's triplets instead of re-running the model."""
    for sparse in cache:
        key = sparse.seq_ids.numpy()[sparse.row.numpy()] * d + sparse.latent.numpy()
        idx = np.minimum(np.searchsorted(pairs, key), len(pairs) - 1)
        hit = pairs[idx] == key
        acts[idx[hit], sparse.col.numpy()[hit]] = sparse.value.numpy()[hit]


@dataclass(frozen=True)
class Selection:
    latent: Int[np.ndarray, " n"]
    kind: list[str]
    interval: Int[np.ndarray, " n"]
    rank: Int[np.ndarray, " n"]
    seq: Int[np.ndarray, " n"]


def select_examples(top_seqs: Int[np.ndarray, "d k"],
                    sample_seqs: Int[np.ndarray, "d n_int m"]) -> Selection:
    """Every shown (latent, sequence): top examples first, then interval samples by interval."""
    lat_t, rank_t = np.nonzero(top_seqs != -1)
    lat_s, int_s, rank_s = np.nonzero(sample_seqs != -1)
    latent = np.concatenate([lat_t, lat_s]).astype(np.int32)
    interval = np.concatenate([np.full(len(lat_t), -1), int_s]).astype(np.int16)
    rank = np.concatenate([rank_t, rank_s]).astype(np.int16)
    seq = np.concatenate([top_seqs[lat_t, rank_t], sample_seqs[lat_s, int_s, rank_s]])
    order = np.lexsort((rank, interval, latent))  # top (interval -1) sorts before interval 0
    kinds = np.array([EXAMPLE_TOP] * len(lat_t) + [EXAMPLE_INTERVAL] * len(lat_s))
    return Selection(latent[order], kinds[order].tolist(), interval[order], rank[order],
                     seq[order].astype(np.int32))


def ablation_summary(latent: Int[np.ndarray, " n"], acts: Float[np.ndarray, "n ctx"],
                     dloss: Float[np.ndarray, "n ctx"], d_sae: int) -> tuple[np.ndarray, np.ndarray]:
    """Per latent, over the active positions of its distinct shown (sequence, latent) pairs:
    mean Δloss and the fraction of positions with Δloss > 0 (the latent helped). NaN if none."""
    ok = (acts > 0) & np.isfinite(dloss)
    rows = np.broadcast_to(latent[:, None], ok.shape)[ok]
    values = dloss[ok].astype(np.float64)
    count = np.bincount(rows, minlength=d_sae)
    total = np.bincount(rows, weights=values, minlength=d_sae)
    helped = np.bincount(rows, weights=(values > 0).astype(np.float64), minlength=d_sae)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32), (helped / count).astype(np.float32)
