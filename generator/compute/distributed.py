"""Several processes (torchrun), one result: the ranks, their shares of the work, and the exact
collectives that combine their states.

One process is the same code with world = 1, where every collective is the identity. Work is cut
on a global batch grid (see `Plan`) that does not depend on the number of processes, so every
batch a process runs is one the single-process run would have run, with the same sequences: the
model computes the same bits, and the states, whose merges are exact (integer sums, maxima, top-k
with ties to the lower sequence), combine to the single-process state.

Only tensors go through torch.distributed (no pickled objects): fixed-size states by all-reduce /
all-gather, variable-size ones (sparse totals, example rows) by a length then the data, sent to
rank 0 one rank at a time so that rank 0 holds its own state plus one other rank's at once.
Backend: nccl for CUDA devices, gloo otherwise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from generator.compute.sparse import SparseSums
from generator.compute.statistics import Pass1State, Pass2State, topk_merge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one build."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    """where this rank's tensors live (collectives need them there under nccl)."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    def block(self, n: int) -> range:
        """This rank's contiguous share of n items (the first n % world ranks get one more)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (self.rank < extra))

    # -------------------------------------------------------------- collectives

    def sum_(self, t: Tensor) -> Tensor:
        if self.world > 1:
            _dist().all_reduce(t, op=_dist().ReduceOp.SUM)
        return t

    def max_(self, t: Tensor) -> Tensor:
        if self.world > 1:
            _dist().all_reduce(t, op=_dist().ReduceOp.MAX)
        return t

    def min_(self, t: Tensor) -> Tensor:
        if self.world > 1:
            _dist().all_reduce(t, op=_dist().ReduceOp.MIN)
        return t

    def broadcast_(self, t: Tensor) -> Tensor:
        """Rank 0's tensor, on every rank (same shape and dtype everywhere)."""
        if self.world > 1:
            _dist().broadcast(t, src=0)
        return t

    def gather(self, t: Tensor) -> Tensor:
        """[world, *t.shape]: every rank's tensor (same shape everywhere), on every rank."""
        if self.world == 1:
            return t[None]
        out = [torch.empty_like(t) for _ in range(self.world)]
        _dist().all_gather(out, t.contiguous())
        return torch.stack(out)

    def to_main(self, parts: list[Tensor]) -> list[list[Tensor]] | None:
        """Variable-length 1-d tensors of every rank, on rank 0 in rank order (None elsewhere).
        Rank 0 receives one rank at a time."""
        if self.world == 1:
            return [parts]
        dist = _dist()
        if not self.main:
            for t in parts:
                dist.send(torch.tensor([len(t)], dtype=torch.int64, device=t.device), dst=0)
                if len(t):
                    dist.send(t.contiguous(), dst=0)
            return None
        out = [parts]
        for src in range(1, self.world):
            got = []
            for t in parts:
                n = torch.zeros(1, dtype=torch.int64, device=t.device)
                dist.recv(n, src=src)
                buf = torch.empty(int(n), dtype=t.dtype, device=t.device)
                if len(buf):
                    dist.recv(buf, src=src)
                got.append(buf)
            out.append(got)
        return out

    def rows_to_main(self, array: np.ndarray, mine: range) -> None:
        """Fill rank 0's `array` with every rank's rows `mine` (contiguous, in rank order).
        Sent a slice of at most 64 MB at a time through the rank's device."""
        if self.world == 1:
            return
        row_bytes = max(1, array[0].nbytes if len(array) else 1)
        step = max(1, (64 << 20) // row_bytes)
        spans = self.gather(torch.tensor([mine.start, mine.stop], device=self.device))
        for src in range(1, self.world):
            lo, hi = (int(x) for x in spans[src])
            for a in range(lo, hi, step):
                b = min(hi, a + step)
                if self.rank == src:
                    _dist().send(torch.from_numpy(np.ascontiguousarray(array[a:b])).to(self.device),
                                 dst=0)
                elif self.main:
                    buf = torch.empty((b - a, *array.shape[1:]), dtype=_torch_dtype(array),
                                      device=self.device)
                    _dist().recv(buf, src=src)
                    array[a:b] = buf.cpu().numpy()


def _torch_dtype(array: np.ndarray) -> torch.dtype:
    return torch.from_numpy(array[:0]).dtype


def _dist():  # type: ignore[no-untyped-def]
    import torch.distributed as dist

    return dist


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def rank_from_env() -> int:
    """This process's rank as torchrun names it (0 outside torchrun), before `start`."""
    return int(os.environ["RANK"]) if under_torchrun() else 0


def start(device: str) -> Ranks:
    """The ranks of this build: one process, or torchrun's (whose environment names them). Under
    torchrun each rank takes the GPU of its local rank; the process group is nccl on CUDA and
    gloo otherwise."""
    if not under_torchrun():
        return Ranks(device=device)
    dist = _dist()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    log.info("rank %d of %d on %s", rank, world, device)
    return Ranks(rank=rank, world=world, device=device)


def stop() -> None:
    if under_torchrun() and _dist().is_initialized():
        _dist().destroy_process_group()


# ------------------------------------------------------------------ combining the states


def combine_pass1(state: Pass1State, ranks: Ranks) -> Pass1State:
    """Pass 1 over the whole corpus from each rank's share, on every rank: counts, sums, maxima
    and top-k everywhere; the sparse totals (top tokens, co-activation) on rank 0 only, except
    co-activation candidates, which pass 2 recounts on every rank when the valve fired."""
    if state.token_sums is not None:
        state.token_sums.fold()
    if state.coact is not None:
        state.coact.fold()
    if ranks.world == 1:
        return state
    n_tokens = ranks.sum_(torch.tensor([state.n_tokens], device=state.n_active.device))
    d, k = state.d_sae, state.k
    vals = ranks.gather(state.top_vals).permute(1, 0, 2).reshape(d, -1)
    seqs = ranks.gather(state.top_seqs).permute(1, 0, 2).reshape(d, -1)
    keep = seqs != -1
    latent = torch.nonzero(keep, as_tuple=True)[0]
    top_vals, top_seqs = topk_merge(vals[keep], seqs[keep], latent, d, k)
    merged = replace(state, n_tokens=int(n_tokens), n_active=ranks.sum_(state.n_active),
                     sum_fixed=ranks.sum_(state.sum_fixed), bos_fixed=ranks.sum_(state.bos_fixed),
                     first_fixed=ranks.sum_(state.first_fixed), max_act=ranks.max_(state.max_act),
                     top_vals=top_vals, top_seqs=top_seqs,
                     token_sums=_sparse_to_main(state.token_sums, ranks),
                     coact=_sparse_to_main(state.coact, ranks))
    pruned = torch.tensor([int(state.coact_pruned)], device=state.n_active.device)
    merged.coact_pruned = bool(ranks.max_(pruned))
    if merged.coact is None:
        return merged
    if ranks.main and (merged.coact_pruned or len(merged.coact.keys) > merged.coact_max_pairs > 0):
        merged.prune_coact()
    merged.coact_pruned = bool(ranks.broadcast_(torch.tensor(
        [int(merged.coact_pruned)], device=state.n_active.device)))
    if merged.coact_pruned:  # every rank recounts the same candidates in pass 2
        n = ranks.broadcast_(torch.tensor([len(merged.coact.keys) if ranks.main else 0],
                                          device=state.n_active.device))
        keys = merged.coact.keys if ranks.main else torch.empty(
            int(n), dtype=torch.int64, device=state.n_active.device)
        merged.coact = SparseSums(False, ranks.broadcast_(keys), None, torch.zeros_like(keys))
    return merged


def _sparse_to_main(sums: SparseSums | None, ranks: Ranks) -> SparseSums | None:
    """Every rank's totals merged on rank 0 (exact: integer sums); an empty state elsewhere."""
    if sums is None:
        return None
    parts = [sums.keys, sums.counts] + ([sums.sums] if sums.sums is not None else [])
    got = ranks.to_main(parts)
    if got is None:
        return SparseSums.empty(sums.keys.device, with_sums=sums.with_sums)
    out = sums
    for other in got[1:]:
        out = out.merge(SparseSums(sums.with_sums, other[0],
                                   other[2] if sums.with_sums else None, other[1]))
    return out


def combine_pass2(state: Pass2State, ranks: Ranks) -> Pass2State:
    """Pass 2 over the whole corpus, on every rank (each rank needs the samples to pick its
    share of the examples)."""
    if ranks.world == 1:
        return state
    gathered = ranks.gather(state.sample_keys)
    merged = replace(state, sample_keys=state.sample_keys.clone())
    for r in range(ranks.world):
        if r != ranks.rank:
            merged.fold_samples_(gathered[r])
    return replace(merged, hist=ranks.sum_(state.hist),
                   interval_counts=ranks.sum_(state.interval_counts),
                   coact_counts=None if state.coact_counts is None
                   else ranks.sum_(state.coact_counts))
