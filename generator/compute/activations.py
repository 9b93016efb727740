"""Activations stage: run the model up to the SAE's hook, encode with the SAE, and re-run the model
from the hook's block to the logits with one latent's decoder contribution removed (ablation).

A transcoder reads one hook and writes another (generator/inputs/sites.py): it encodes at
`site.name`, and its decoder rows are removed (ablation) or its output spliced in (quality) at
`site.writes`. The re-runs start at the block of the hook read, which is never after the one
written; the embeddings' hook (layer -1) re-runs the whole model from the tokens.

A sequential SAE (temporal: its code at a position attends over the sequence's earlier
positions) is encoded and reconstructed over whole sequences (encode_at, reconstruct_at); its
latents write W_dec[i] at the hook like any SAE's, so the ablation and logit effects are the same.

All tensors stay on the model's device; callers move only small results to the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from generator.errors import UserError
from generator.inputs.sites import SEQUENTIAL, HookSite


class HookedSAE:
    """A model and an SAE on one of its hooks, with the few operations the statistics need."""

    def __init__(self, model: Any, sae: Any, site: HookSite, max_norm_multiple: float = 0.0):
        self.model = model
        self.sae = sae
        self.site = site
        self.max_norm_multiple = max_norm_multiple
        """> 0: positions whose activation norm at the hook read is over this multiple of their
        sequence's median are excluded from every statistic (`included`)."""
        self.device = next(model.parameters()).device
        if any(name.endswith(".hook_mlp_in") for name in (site.reads, site.writes)):
            model.set_use_hook_mlp_in(True)  # TransformerLens only calls that hook when asked
        if site.kind == "z" and not getattr(sae, "hook_z_reshaping_mode", False):
            # hook_z is [..., n_heads, d_head]; an SAE whose cfg says reshape_activations "none"
            # (Gemma Scope 2's converter writes that) reads it flattened, as d_in = n_heads x d_head
            sae.turn_on_forward_pass_hook_z_reshaping()
        self._resid_name = f"blocks.{max(site.layer, 0)}.hook_resid_pre"
        self.sequential = sae.cfg.architecture() in SEQUENTIAL
        """its code at a position depends on the sequence's earlier positions (a temporal SAE's
        attention over the context): it encodes whole sequences, never a set of positions."""

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @torch.inference_mode()
    def run_to_hook(
        self, tokens: Int[Tensor, "batch seq"]
    ) -> tuple[Float[Tensor, "batch seq d_model"], Tensor]:
        """(residual stream entering the hook's block, hook activation), running no further than
        that block."""
        resid, read, _ = self._run(tokens, (self.site.reads,))
        return resid, read

    @torch.inference_mode()
    def run_to_hooks(self, tokens: Int[Tensor, "batch seq"]) -> tuple[Tensor, Tensor, Tensor]:
        """(what the re-runs start from, the activation read, the activation at the hook written:
        the same for an SAE), running no further than the block written."""
        return self._run(tokens, (self.site.reads, self.site.writes))

    def _run(self, tokens: Tensor, names: tuple[str, ...]) -> tuple[Tensor, Tensor, Tensor]:
        cache: dict[str, Tensor] = {}

        def keep(value: Tensor, hook: Any) -> None:
            cache[hook.name] = value

        start = tokens if self.site.layer < 0 else None  # the embeddings: re-run from the tokens
        wanted = set(names) | ({self._resid_name} if start is None else set())
        if wanted == {self._resid_name}:
            # The residual at the block's input is exactly what the model returns when stopped
            # there, so no block needs to run.
            resid = self.model(tokens, stop_at_layer=self.site.layer)
            return resid, resid, resid
        stop = max(self.site.layer, self.site.write_layer if len(names) > 1 else -1) + 1
        self.model.run_with_hooks(tokens, stop_at_layer=stop,
                                  fwd_hooks=[(name, keep) for name in wanted])
        read = cache[names[0]]
        if self.site.kind == "mlp_input":  # the norm's output: its normalized input x its weight
            ln2 = self.model.blocks[self.site.layer].ln2
            read = read * ln2.w + (ln2.b if hasattr(ln2, "b") else 0)
        return (cache[self._resid_name] if start is None else start, read,
                cache[names[-1]] if len(names) > 1 else read)

    @torch.inference_mode()
    def included(self, tokens: Int[Tensor, "batch seq"], read: Tensor,
                 bos_id: int) -> Bool[Tensor, "batch seq"]:
        """The positions every statistic counts: not BOS (nor padding, which is BOS), and, with
        `max_norm_multiple` k > 0, whose activation norm ‖x‖ at the hook read is at most k times
        the median norm over the sequence's non-BOS positions (the lower median; per sequence, so
        that a position's fate does not depend on how the sequences were batched). Real models
        put huge norms on a few positions (Gemma's attention sinks, Qwen's first tokens), whose
        activations would otherwise win every latent's top examples."""
        mask = tokens != bos_id
        if self.max_norm_multiple <= 0:
            return mask
        norms = read.reshape(*tokens.shape, -1).float().norm(dim=-1)
        median = torch.where(mask, norms, float("nan")).nanmedian(dim=1).values
        return mask & ~(norms > self.max_norm_multiple * median[:, None])

    @torch.inference_mode()
    def encode(self, hook_acts: Tensor) -> Float[Tensor, "batch seq d_sae"]:
        acts = self.sae.encode(hook_acts.to(self.sae.W_dec.dtype))  # --dtype: the SAE keeps its
        # one reduction instead of an elementwise isfinite pass: NaN and inf propagate into the sum
        if not torch.isfinite(acts.sum(dtype=torch.float32)):
            raise UserError("the SAE produced NaN/inf activations; check the SAE weights and "
                            "use --device cpu or a float32 SAE to rule out overflow")
        return acts

    def encode_at(self, hook_acts: Tensor, rows: Int[Tensor, " n"], cols: Int[Tensor, " n"],
                  step: int) -> Iterator[tuple[int, Float[Tensor, "chunk d_sae"]]]:
        """The SAE's codes at positions (rows[j], cols[j]) of `hook_acts` ([batch, seq, *the
        hook's shape]), as (first j, codes of a chunk), about `step` positions at a time, so no
        [batch, seq, d_sae] array is held whole. A sequential SAE encodes whole sequences
        (max(1, step // seq) at a time) and keeps the positions asked for; `rows` must then be
        ascending (as torch.nonzero gives them)."""
        step = max(1, step)
        if not self.sequential:
            for start in range(0, len(rows), step):
                yield start, self.encode(hook_acts[rows[start:start + step],
                                                   cols[start:start + step]])
            return
        for seqs, start, stop, local in _by_sequence(rows, max(1, step // hook_acts.shape[1])):
            yield start, self.encode(hook_acts[seqs])[local, cols[start:stop]]

    @torch.inference_mode()
    def active_entries(self, hook_acts: Tensor, mask: Bool[Tensor, " seq"],
                       rows: int) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"], Float[Tensor, " n"]]:
        """One sequence's active (position, latent, activation) entries at the positions where
        `mask` is True, ordered by position then latent; the SAE encodes `rows` positions at a
        time (so no [seq, d_sae] output is held whole; a sequential SAE encodes the whole
        sequence). `hook_acts`: [seq, *the hook's shape]."""
        cols = torch.nonzero(mask)[:, 0]
        pos_l, lat_l, val_l = [], [], []
        for start, acts in self.encode_at(hook_acts[None], torch.zeros_like(cols), cols, rows):
            idx, latent = torch.nonzero(acts > 0, as_tuple=True)
            pos_l.append(cols[start + idx])
            lat_l.append(latent)
            val_l.append(acts[idx, latent].float())
        if not pos_l:
            return cols[:0], cols[:0], torch.zeros(0, device=cols.device)
        return torch.cat(pos_l), torch.cat(lat_l), torch.cat(val_l)

    def decoder_rows(self, latents: Int[Tensor, " n"]) -> Float[Tensor, "n d_out"]:
        """Each latent's decoder direction in the space of the hook written (what a=1 adds)."""
        return self.sae.W_dec[latents].to(torch.float32)

    @torch.inference_mode()
    def reconstruct(self, read: Tensor, acts: Tensor) -> Float[Tensor, "n d_out"]:
        """The SAE's whole output for activations `read` at `site.name` whose latents are
        `acts`, flattened to [n, d_out] float32: decode(acts), plus a skip transcoder's skip term
        x @ W_skip.T (as sae_lens' forward)."""
        out = self.sae.decode(acts)
        w_skip = getattr(self.sae, "W_skip", None)
        if w_skip is not None:
            out = out + read.to(w_skip.dtype) @ w_skip.T.to(read.device)
        return out.reshape(len(read), -1).float()

    @torch.inference_mode()
    def reconstruct_at(self, read: Tensor, rows: Int[Tensor, " n"], cols: Int[Tensor, " n"],
                       step: int) -> Float[Tensor, "n d_out"]:
        """The SAE's whole output at positions (rows[j], cols[j]) of `read` ([batch, seq, *the
        hook's shape]), [n, d_out] float32, `step` positions at a time (rows ascending). A
        sequential SAE's output is its forward pass over whole sequences (a temporal SAE's
        predicted part included)."""
        if not self.sequential:
            parts = [self.reconstruct(read[rows[start:start + len(codes)],
                                           cols[start:start + len(codes)]], codes)
                     for start, codes in self.encode_at(read, rows, cols, step)]
        else:
            per = max(1, max(1, step) // read.shape[1])
            parts = [self.sae(read[seqs].to(self.sae.W_dec.dtype))[local, cols[start:stop]]
                     .flatten(1).float() for seqs, start, stop, local in _by_sequence(rows, per)]
        d_out = int(getattr(self.sae.cfg, "d_out", self.sae.cfg.d_in))
        return torch.cat(parts) if parts else torch.zeros((0, d_out), device=read.device)

    @torch.inference_mode()
    def losses(
        self,
        resid: Float[Tensor, "batch seq d_model"] | Int[Tensor, "batch seq"],
        tokens: Int[Tensor, "batch seq"],
        delta: Float[Tensor, "batch seq d_out"] | None = None,
        needed: Bool[Tensor, "batch seq_minus_1"] | None = None,
        block: int = 2048,
    ) -> Float[Tensor, "batch seq_minus_1"]:
        """Next-token loss per position, running from the block of the hook read to the logits
        (`resid`: that block's input, from run_to_hook), with `delta` subtracted from the
        activation of the hook written (None: the clean run). With `needed`, the unembedding
        (the costliest part for a small model with a large vocabulary) runs only where needed is
        True, in blocks of `block` positions, and other positions hold NaN."""
        hooks = []
        if delta is not None:
            def ablate(value: Tensor, hook: Any) -> Tensor:
                return value - delta.reshape(value.shape).to(value.dtype)

            hooks.append((self.site.writes, ablate))
        start = self.site.layer if self.site.layer >= 0 else None
        if needed is None:
            logits = self.model.run_with_hooks(resid, start_at_layer=start, fwd_hooks=hooks)
            return _next_token_loss(logits, tokens)
        final = self.model.run_with_hooks(resid, start_at_layer=start,
                                          stop_at_layer=self.model.cfg.n_layers, fwd_hooks=hooks)
        rows, cols = torch.nonzero(needed, as_tuple=True)
        picked, target = final[rows, cols], tokens[rows, cols + 1].long()
        out = torch.full(needed.shape, float("nan"), device=resid.device)
        loss = torch.cat([self._unembed_loss(picked[i:i + block], target[i:i + block])
                          for i in range(0, len(target), block)]) if len(target) else picked[:0, 0]
        out[rows, cols] = loss
        return out

    def _unembed_loss(self, resid: Float[Tensor, "n d_model"], target: Int[Tensor, " n"]) -> Tensor:
        """Cross-entropy as logsumexp - target logit: no [n, d_vocab] log-softmax is written."""
        logits = self.model.unembed(self.model.ln_final(resid[None]))[0].float()
        return torch.logsumexp(logits, -1) - logits.gather(1, target[:, None])[:, 0]


def _by_sequence(rows: Int[Tensor, " n"],
                 per: int) -> Iterator[tuple[Tensor, int, int, Tensor]]:
    """Positions grouped by sequence, `per` sequences at a time (`rows` ascending): (the
    sequences, first and end index into rows, each position's sequence within the group)."""
    seqs, counts = torch.unique_consecutive(rows, return_counts=True)
    ends = torch.cumsum(counts, 0).tolist()
    for first in range(0, len(seqs), per):
        start = ends[first - 1] if first else 0
        stop = ends[min(first + per, len(seqs)) - 1]
        group = counts[first:first + per]
        yield (seqs[first:first + per], start, stop,
               torch.repeat_interleave(torch.arange(len(group), device=rows.device), group))


def _next_token_loss(
    logits: Float[Tensor, "batch seq d_vocab"], tokens: Int[Tensor, "batch seq"]
) -> Float[Tensor, "batch seq_minus_1"]:
    pred = logits[:, :-1].float()
    return F.cross_entropy(pred.transpose(1, 2), tokens[:, 1:].long(), reduction="none")


def residual_directions(model: Any, sae: Any, site: HookSite) -> Float[Tensor, "d_sae d_model"]:
    """d_i: each latent's output direction in the residual stream (docs/STATISTICS.md, logit effects)."""
    w_dec = sae.W_dec.detach().to(torch.float32)
    block = model.blocks[max(site.write_layer, 0)]
    if site.write_kind == "mlp_hidden":
        return w_dec @ block.mlp.W_out.detach().float()
    if site.write_kind == "z":
        w_o = block.attn.W_O.detach().float()  # [n_heads, d_head, d_model]
        return w_dec @ w_o.reshape(-1, w_o.shape[-1])
    return w_dec
