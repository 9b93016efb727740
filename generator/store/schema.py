"""The store: the product's data contract between compute and render (schema in docs/STORE.md).

A store is a folder:

    meta.json           StoreMeta: what was analysed, with which settings and versions
    latents.parquet     one row per latent (statistics, logit effects, neighbours, ablation summary)
    examples.parquet    one row per shown example (top examples and interval samples) per latent
    sequences.parquet   the tokenized sequences that examples point to, and the null pool
    vocab.parquet       every vocabulary id with its raw bytes (for faithful token rendering)
    prompts.parquet, prompt_acts.parquet, prompt_latents.parquet   the prompt view (Prompts),
                        when the build had prompts
    corpus_seqs.parquet, corpus_acts.parquet, corpus_latents.parquet   the corpus view
                        (CorpusView) of the kept sequences, unless built with --no-corpus-view
    token_latents.parquet   per vocabulary token, the latents that fire most on it
                        (TokenLatents: the search's token index)

This module holds the tables as typed dataclasses; generator/store/io.py reads and writes them.
Everything here is numpy + pyarrow: no torch, so `render` and notebooks load it without a GPU stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson
from jaxtyping import Float, Int

SCHEMA_VERSION = 5
EXAMPLE_TOP = "top"
EXAMPLE_INTERVAL = "interval"


@dataclass(frozen=True)
class StoreMeta:
    """What was analysed and how: enough to reproduce the build and to describe it on the site."""

    model: str
    """model name or local path as given (or 'demo')."""
    sae: str
    """SAE release/id or local path as given (or 'demo')."""
    sae_architecture: str
    """sae_lens architecture name: standard, topk, jumprelu, gated, ..."""
    hook: str
    """TransformerLens hook point the SAE reads."""
    d_model: int
    d_sae: int
    d_vocab: int
    corpus: str
    """description of the corpus."""
    n_seqs: int
    ctx: int
    n_tokens: int
    """N: included positions (BOS/padding/masked excluded), the denominator of density."""
    settings: dict[str, Any]
    """BuildConfig.settings(): every option that changes the numbers."""
    versions: dict[str, str]
    """package versions (feature-browser, torch, transformer_lens, sae_lens)."""
    logit_direction: str
    """how the latent's residual-stream direction was formed, e.g. 'W_dec' or 'W_dec @ W_out'."""
    ln_folded: bool
    """whether LayerNorm weights were folded into W_U for the logit effects."""
    created: str
    """ISO date of the build (SOURCE_DATE_EPOCH honoured, for reproducible builds)."""
    l0: float
    """mean number of active latents per included position."""
    bos_id: int = -1
    """token id of BOS / document separator: those positions are excluded from statistics."""
    has_ablation: bool = False
    """whether examples carry per-token Δloss and latents an ablation summary."""
    coact_method: str = ""
    """how co-activation neighbours were found ('exact', 'candidates: ...', or '' if absent)."""
    eval_n_seqs: int = 0
    """the SAE-level figures below are over the first eval_n_seqs sequences (0: not computed;
    generator/compute/quality.py)..."""
    eval_n_positions: int = 0
    """...their included positions (explained variance is over these)..."""
    eval_n_predictions: int = 0
    """...and their next-token predictions whose target is not BOS (the losses are means)."""
    explained_variance: float | None = None
    """1 - Σ‖x - x̂‖² / Σ‖x - x̄‖² of the SAE's reconstruction x̂ of the hook activations x."""
    ce_loss_clean: float | None = None
    """mean next-token loss of the model as it is..."""
    ce_loss_spliced: float | None = None
    """...with the SAE's reconstruction in place of the hook activation at non-BOS positions..."""
    ce_loss_zero: float | None = None
    """...and with the hook activation zeroed there."""
    loss_recovered: float | None = None
    """(ce_loss_zero - ce_loss_spliced) / (ce_loss_zero - ce_loss_clean) (None: undefined)."""
    hook_out: str | None = None
    """a transcoder's output hook, where its latents write (None: an SAE writes where it reads).
    Ablation, logit effects, explained variance and the spliced loss are at this hook."""
    weight_processing: dict[str, bool] | None = None
    """TransformerLens' weight processing flags the model was loaded with (fold_ln,
    center_writing_weights, ...): all False means the model's own activations; None: not
    recorded (a store from before they were)."""
    n_high_norm: int = 0
    """non-BOS positions excluded for an activation norm over settings' max_norm_multiple times
    their sequence's median (HookedSAE.included); they count nowhere, like BOS."""
    files: dict[str, str] | None = None
    """sha256 (hex) of every other file of the store, by name, so that `render`, `export` and a
    resumed build refuse a damaged store (None: written before checksums were kept)."""
    schema_version: int = SCHEMA_VERSION

    @property
    def hook_label(self) -> str:
        """The hook in words for pages: the hook, or "reads X → writes Y" for a transcoder."""
        return f"reads {self.hook} → writes {self.hook_out}" if self.hook_out else self.hook

    @property
    def processing_label(self) -> str:
        """The processing in words for the index: "raw model activations" or
        "weights processed: fold_ln, ..."."""
        if self.weight_processing is None:
            return "not recorded"
        on = [key for key, value in sorted(self.weight_processing.items()) if value]
        text = "weights processed: " + ", ".join(on) if on else "raw model activations"
        dtype = self.settings.get("dtype", "float32")
        return text if dtype == "float32" else f"{text}, in {dtype}"

    @property
    def positions_label(self) -> str:
        """How sequences were made and which positions count, in words for the index."""
        per_doc = self.settings.get("one_doc_per_seq", False)
        text = ("one document per sequence (its first tokens; padding excluded)" if per_doc else
                "documents concatenated, BOS between them, cut into sequences")
        multiple = float(self.settings.get("max_norm_multiple", 0) or 0)
        if multiple > 0:
            text += (f"; positions with an activation norm over {multiple:g}× their sequence's "
                     f"median excluded: {self.n_high_norm:,}")
        return text

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


@dataclass(frozen=True)
class LatentTable:
    """Per-latent statistics; axis 0 of every array is the latent id (length d_sae)."""

    n_active: Int[np.ndarray, " d_sae"]
    """number of included positions with a > 0."""
    sum_act: Float[np.ndarray, " d_sae"]
    """sum of a over included positions (float64)."""
    max_act: Float[np.ndarray, " d_sae"]
    """max of a over included positions (0 for a dead latent)."""
    hist: Int[np.ndarray, "d_sae n_bins"]
    """counts of active positions in n_bins equal-width bins of (0, max]."""
    interval_counts: Int[np.ndarray, "d_sae n_intervals"]
    """number of sequences whose per-sequence max lies in each interval of (0, max]."""
    logit_pos_ids: Int[np.ndarray, "d_sae n_logits"]
    logit_pos_vals: Float[np.ndarray, "d_sae n_logits"]
    logit_neg_ids: Int[np.ndarray, "d_sae n_logits"]
    logit_neg_vals: Float[np.ndarray, "d_sae n_logits"]
    """top positive / most negative logit effects (vocab ids and values), best first."""
    logit_hist: Int[np.ndarray, "d_sae logit_bins"]
    """histogram of the latent's logit effect over the whole vocabulary..."""
    logit_lo: Float[np.ndarray, " d_sae"]
    logit_hi: Float[np.ndarray, " d_sae"]
    """...with equal-width bins over [logit_lo, logit_hi]."""
    top_token_ids: Int[np.ndarray, "d_sae n_top"] | None = None
    """vocab ids with the largest total activation (-1 pads when fewer tokens are active)."""
    top_token_sums: Float[np.ndarray, "d_sae n_top"] | None = None
    top_token_counts: Int[np.ndarray, "d_sae n_top"] | None = None
    nb_cos_ids: Int[np.ndarray, "d_sae n_nb"] | None = None
    """top latents by decoder cosine similarity, and the similarities."""
    nb_cos_vals: Float[np.ndarray, "d_sae n_nb"] | None = None
    nb_coact_ids: Int[np.ndarray, "d_sae n_nb"] | None = None
    """top latents by co-activation Jaccard over positions (-1 pads), and the Jaccard values."""
    nb_coact_vals: Float[np.ndarray, "d_sae n_nb"] | None = None
    abl_mean: Float[np.ndarray, " d_sae"] | None = None
    """mean Δloss over shown examples' active positions (NaN when none)."""
    abl_frac_helped: Float[np.ndarray, " d_sae"] | None = None
    """fraction of those positions where Δloss > 0 (the latent helped)."""
    bos_sum: Float[np.ndarray, " d_sae"] | None = None
    """sum of a over the excluded BOS positions (float64; in no other statistic)."""
    first_sum: Float[np.ndarray, " d_sae"] | None = None
    """sum of a over first positions, the included positions right after a BOS (float64; part of
    sum_act)."""
    enc_dec_cos: Float[np.ndarray, " d_sae"] | None = None
    """cosine of the latent's encoder column W_enc[:, i] and decoder row W_dec[i] (float32)."""
    map_x: Float[np.ndarray, " d_sae"] | None = None
    """the latent map: 2-D UMAP layout of the decoder directions, cosine metric (float32, rounded
    to 4 decimals; generator/compute/latent_map.py)..."""
    map_y: Float[np.ndarray, " d_sae"] | None = None
    """...its second coordinate."""
    null_seqs: Int[np.ndarray, "d_sae n_null"] | None = None
    """null sequences, for explanation scoring: the first n_null (8) sequences of the null pool,
    in its order, on which the latent has no active entry (a = 0 at every included position;
    it may fire at the excluded BOS ones), as global sequence ids (int32, all kept in
    sequences.parquet), -1 padded where fewer qualify. The pool: the 64 sequences (all, in a
    smaller corpus) with the smallest key (h(seed, s, 2**32 - 1) << 31) | s, in that order
    (generator/compute/nulls.py). None: a store from before they were kept."""

    @property
    def d_sae(self) -> int:
        return int(self.n_active.shape[0])


@dataclass(frozen=True)
class SharedRows:
    """A 2-D array whose rows are rows of `base` picked by `index`, read like a numpy array (rows
    first, then columns): the examples' per-token arrays as the build computes them, where an
    example shown twice (a top example and an interval sample of the same sequence) shares one
    row. Memory: base only, not one more row per example."""

    base: np.ndarray
    index: Int[np.ndarray, " n"]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.index), int(self.base.shape[1])

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> np.ndarray:
        # (base[index])[rows, *rest] is base[index[rows], *rest] when rows is an integer or an
        # array (numpy's advanced indexing pairs it with arrays in rest); a slice of rows is
        # basic indexing, which arrays in rest do not pair with
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(rows, slice):
            return self.base[self.index[rows]][(slice(None), *rest)]
        return self.base[(self.index[rows], *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.base[self.index]
        return out if dtype is None else out.astype(dtype)


@dataclass(frozen=True)
class Examples:
    """Shown examples, one row each, sorted by (latent, kind top-then-interval, interval, rank)."""

    latent: Int[np.ndarray, " n_ex"]
    kind: list[str]
    """EXAMPLE_TOP or EXAMPLE_INTERVAL."""
    interval: Int[np.ndarray, " n_ex"]
    """interval index for interval samples, -1 for top examples."""
    rank: Int[np.ndarray, " n_ex"]
    """0-based order within its group (top: by activation; interval: by hash key)."""
    seq: Int[np.ndarray, " n_ex"]
    """global sequence index into the corpus (see Sequences)."""
    acts: Float[np.ndarray, "n_ex ctx"] | SharedRows
    """the latent's activation at every position of the sequence (0 at excluded positions)."""
    dloss: Float[np.ndarray, "n_ex ctx"] | SharedRows | None = None
    """ablation Δloss of the prediction made at position t, i.e. of token t+1 (pages attribute it
    to token t+1, the token predicted); NaN where undefined (last position, BOS targets)."""


@dataclass(frozen=True)
class Prompts:
    """The prompt view (generator/compute/promptview.py): per prompt its tokens; every active (prompt,
    position, latent) entry sorted by prompt, position, latent; and per (prompt, latent active on
    it), sorted the same way, its totals over the prompt (the `s_` fields)."""

    text: list[str]
    """the prompt as given."""
    tokens: list[Int[np.ndarray, " length"]]
    """its token ids (int32), BOS first, at most ctx."""
    truncated: np.ndarray
    """bool per prompt: the prompt had more than ctx - 1 tokens and was cut."""
    loss: list[Float[np.ndarray, " length"]]
    """clean next-token loss at each position (predicting token t+1); NaN at the last position
    and where token t+1 is BOS."""
    prompt: Int[np.ndarray, " n"]
    pos: Int[np.ndarray, " n"]
    latent: Int[np.ndarray, " n"]
    act: Float[np.ndarray, " n"]
    """the latent's activation at that position (> 0; BOS positions have no entries)."""
    dloss: Float[np.ndarray, " n"]
    """Δloss of predicting token pos+1 when the latent is removed at every non-BOS position of
    the prompt (NaN where undefined, as `loss`)."""
    s_prompt: Int[np.ndarray, " m"]
    s_latent: Int[np.ndarray, " m"]
    s_n_active: Int[np.ndarray, " m"]
    """positions of the prompt where the latent is active..."""
    s_max_act: Float[np.ndarray, " m"]
    s_sum_act: Float[np.ndarray, " m"]
    """...its max and total activation there (float64)..."""
    s_sum_abs_dloss: Float[np.ndarray, " m"]
    """...and Σ |Δloss| over every position of the prompt where Δloss is defined (float64)."""

    def __len__(self) -> int:
        return len(self.text)


CORPUS_TOP = 5
"""latents kept (and listed) per token of a corpus page: the most active there."""
CORPUS_LIST = 10
"""latents per order (max, total activation) in a corpus page's table."""


@dataclass(frozen=True)
class CorpusView:
    """The corpus view (generator/compute/corpusview.py) of the kept sequences, `row` indexing
    StoreData.seq_ids: kept entries sorted by row, position, latent; and the table's rows (the
    `s_` fields) sorted by row, latent."""

    loss: Float[np.ndarray, "n_kept ctx"]
    """clean next-token loss at each position (NaN at the last position and before a BOS)."""
    n_latents: Int[np.ndarray, " n_kept"]
    """latents active anywhere on the sequence."""
    row: Int[np.ndarray, " n"]
    pos: Int[np.ndarray, " n"]
    latent: Int[np.ndarray, " n"]
    act: Float[np.ndarray, " n"]
    """each position's CORPUS_TOP most active latents, and every active position of the table's
    latents (> 0; BOS positions have no entries)."""
    s_row: Int[np.ndarray, " m"]
    s_latent: Int[np.ndarray, " m"]
    s_n_active: Int[np.ndarray, " m"]
    s_max_act: Float[np.ndarray, " m"]
    s_sum_act: Float[np.ndarray, " m"]
    """the table: the CORPUS_LIST latents with the largest max and those with the largest total
    activation (float64) on the sequence, with their active-position count."""


@dataclass(frozen=True)
class TokenLatents:
    """Per vocab id that some latent fired on (ascending), the latents with the largest total
    activation on it over the corpus (ties to the lower id; -1 pads)."""

    token: Int[np.ndarray, " t"]
    latent: Int[np.ndarray, "t n"]
    sum_act: Float[np.ndarray, "t n"]
    """the latent's total activation on the token (float32)..."""
    count: Int[np.ndarray, "t n"]
    """...over this many positions holding the token where it was active."""


@dataclass(frozen=True)
class StoreData:
    """Everything in a store, in memory."""

    meta: StoreMeta
    latents: LatentTable
    examples: Examples
    seq_ids: Int[np.ndarray, " n_kept"]
    """global indices of the kept sequences, ascending: those some example points to, and the
    null pool (LatentTable.null_seqs)."""
    seq_tokens: Int[np.ndarray, "n_kept ctx"]
    """their tokens."""
    vocab: list[bytes] = field(repr=False)
    """raw bytes of every vocab id (byte-level BPE pieces may be partial UTF-8)."""
    prompts: Prompts | None = None
    """the prompt view, when the build had prompts."""
    corpus: CorpusView | None = None
    """the corpus view of the kept sequences, unless the build was told not to compute it."""
    token_latents: TokenLatents | None = None
    """the token index (from pass 1's per-(latent, token) sums)."""

    def tokens_of(self, seq: int) -> Int[np.ndarray, " ctx"]:
        row = int(np.searchsorted(self.seq_ids, seq))
        if row >= len(self.seq_ids) or self.seq_ids[row] != seq:
            raise KeyError(f"sequence {seq} is not kept in the store")
        return self.seq_tokens[row]
