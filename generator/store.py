"""The store: the product's data contract between compute and render (schema in docs/STORE.md).

A store is a folder:

    meta.json           StoreMeta: what was analysed, with which settings and versions
    latents.parquet     one row per latent (statistics, logit effects, neighbours, ablation summary)
    examples.parquet    one row per shown example (top examples and interval samples) per latent
    sequences.parquet   the tokenized sequences that examples point to
    vocab.parquet       every vocabulary id with its raw bytes (for faithful token rendering)
    prompts.parquet, prompt_acts.parquet, prompt_latents.parquet   the prompt view (Prompts),
                        when the build had prompts
    corpus_seqs.parquet, corpus_acts.parquet, corpus_latents.parquet   the corpus view
                        (CorpusView) of the kept sequences, unless built with --no-corpus-view
    token_latents.parquet   per vocabulary token, the latents that fire most on it
                        (TokenLatents: the search's token index)

Everything here is numpy + pyarrow: no torch, so `render` and notebooks load it without a GPU stack.
Writes go to a temporary folder renamed into place, so a failed build never leaves half a store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from jaxtyping import Float, Int

from generator.atomic import atomic_dir
from generator.errors import UserError
from generator.outputs import STORE_MARKER

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
    generator/quality.py)..."""
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
    schema_version: int = SCHEMA_VERSION

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
    to 4 decimals; generator/latent_map.py)..."""
    map_y: Float[np.ndarray, " d_sae"] | None = None
    """...its second coordinate."""

    @property
    def d_sae(self) -> int:
        return int(self.n_active.shape[0])


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
    acts: Float[np.ndarray, "n_ex ctx"]
    """the latent's activation at every position of the sequence (0 at excluded positions)."""
    dloss: Float[np.ndarray, "n_ex ctx"] | None = None
    """ablation Δloss of the prediction made at position t, i.e. of token t+1 (pages attribute it
    to token t+1, the token predicted); NaN where undefined (last position, BOS targets)."""


@dataclass(frozen=True)
class Prompts:
    """The prompt view (generator/prompts.py): per prompt its tokens; every active (prompt,
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


@dataclass(frozen=True)
class CorpusView:
    """The corpus view (generator/corpusview.py) of the kept sequences, `row` indexing
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
    """global indices of the kept sequences, ascending."""
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


def _list_column(arr: np.ndarray) -> pa.Array:
    """A 2-D array as a fixed-size-list column (one list per row)."""
    flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])


def _table_from_arrays(columns: Mapping[str, np.ndarray | list[Any]]) -> pa.Table:
    out = {}
    for name, value in columns.items():
        if isinstance(value, np.ndarray) and value.ndim == 2:
            out[name] = _list_column(value)
        else:
            out[name] = pa.array(value)
    return pa.table(out)


def _arrays_from_table(table: pa.Table) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            out[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        elif pa.types.is_string(col.type):
            out[name] = col.to_pylist()
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


def _present(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


def write_store(data: StoreData, path: Path) -> None:
    """Write atomically: into a sibling temp folder, then swap it in place of `path`.
    Memory: about one more copy of the largest table (pyarrow columns built from the arrays)."""
    with atomic_dir(path) as tmp:
        # the proof that this folder is a store, so that the next build may replace it
        (tmp / STORE_MARKER).write_bytes(b"")
        (tmp / "meta.json").write_bytes(data.meta.to_json())
        latents = {"latent": np.arange(data.latents.d_sae, dtype=np.int32), **_present(data.latents)}
        pq.write_table(_table_from_arrays(latents), tmp / "latents.parquet")
        pq.write_table(_table_from_arrays(_present(data.examples)), tmp / "examples.parquet")
        seqs = {"seq": data.seq_ids, "tokens": data.seq_tokens}
        pq.write_table(_table_from_arrays(seqs), tmp / "sequences.parquet")
        vocab = pa.table({"id": pa.array(np.arange(len(data.vocab), dtype=np.int32)),
                          "bytes": pa.array(data.vocab, type=pa.binary())})
        pq.write_table(vocab, tmp / "vocab.parquet")
        if data.prompts is not None:
            _write_prompts(data.prompts, tmp)
        if data.corpus is not None:
            _write_corpus(data.corpus, data.seq_ids, tmp)
        if data.token_latents is not None:
            pq.write_table(_table_from_arrays(_present(data.token_latents)),
                           tmp / "token_latents.parquet")


PROMPT_FILES = ("prompts.parquet", "prompt_acts.parquet", "prompt_latents.parquet")
_ENTRY_FIELDS = ("prompt", "pos", "latent", "act", "dloss")
_SUMMARY_FIELDS = ("prompt", "latent", "n_active", "max_act", "sum_act", "sum_abs_dloss")


def _write_prompts(p: Prompts, tmp: Path) -> None:
    table = pa.table({
        "prompt": pa.array(np.arange(len(p), dtype=np.int32)),
        "text": pa.array(p.text, type=pa.string()),
        "tokens": pa.array([np.asarray(t, dtype=np.int32) for t in p.tokens],
                           type=pa.list_(pa.int32())),
        "truncated": pa.array(np.asarray(p.truncated, dtype=bool)),
        "loss": pa.array([np.asarray(x, dtype=np.float32) for x in p.loss],
                         type=pa.list_(pa.float32())),
    })
    pq.write_table(table, tmp / PROMPT_FILES[0])
    _write_view_tables(p, _ENTRY_FIELDS, _SUMMARY_FIELDS, PROMPT_FILES, tmp)


def _write_view_tables(view: Any, entries: tuple[str, ...], summary: tuple[str, ...],
                       files: tuple[str, ...], tmp: Path) -> None:
    """A view's entries (fields named as is) and summary rows (fields `s_<name>`): the second
    and third of its files."""
    pq.write_table(pa.table({name: getattr(view, name) for name in entries}), tmp / files[1])
    pq.write_table(pa.table({name: getattr(view, "s_" + name) for name in summary}),
                   tmp / files[2])


def _view_columns(entries: pa.Table, summary: pa.Table, entry_names: tuple[str, ...],
                  summary_names: tuple[str, ...]) -> dict[str, Any]:
    """The columns _write_view_tables wrote, as the view's fields (KeyError when one lacks)."""
    columns: dict[str, Any] = {name: entries.column(name).to_numpy() for name in entry_names}
    return columns | {"s_" + name: summary.column(name).to_numpy() for name in summary_names}


def _read_prompts(path: Path) -> Prompts | None:
    """The prompt view's tables, or None when the store has none (a build without prompts)."""
    if not any((path / name).exists() for name in PROMPT_FILES):
        return None
    head, entries, summary = (_read_table(path, name) for name in PROMPT_FILES)
    try:
        columns: dict[str, Any] = {
            name: [np.asarray(x, dtype=np.int32 if name == "tokens" else np.float32)
                   for x in head.column(name).to_pylist()] for name in ("tokens", "loss")}
        columns |= _view_columns(entries, summary, _ENTRY_FIELDS, _SUMMARY_FIELDS)
        return Prompts(text=head.column("text").to_pylist(),
                       truncated=head.column("truncated").to_numpy(zero_copy_only=False),
                       **columns)
    except KeyError as err:
        raise UserError(f"store {path} is damaged (a prompt table lacks a column: {err}); "
                        "rebuild it with `feature-browser build`") from None


CORPUS_FILES = ("corpus_seqs.parquet", "corpus_acts.parquet", "corpus_latents.parquet")
_CORPUS_ENTRIES = ("row", "pos", "latent", "act")
_CORPUS_TABLE = ("row", "latent", "n_active", "max_act", "sum_act")


def _write_corpus(c: CorpusView, seq_ids: np.ndarray, tmp: Path) -> None:
    pq.write_table(_table_from_arrays({"seq": np.asarray(seq_ids, dtype=np.int64),
                                       "n_latents": c.n_latents, "loss": c.loss}),
                   tmp / CORPUS_FILES[0])
    _write_view_tables(c, _CORPUS_ENTRIES, _CORPUS_TABLE, CORPUS_FILES, tmp)


def _read_corpus(path: Path, seq_ids: np.ndarray) -> CorpusView | None:
    """The corpus view's tables, or None when the store has none (--no-corpus-view); its
    sequences must be the store's kept sequences, in order."""
    if not any((path / name).exists() for name in CORPUS_FILES):
        return None
    head, entries, table = (_read_table(path, name) for name in CORPUS_FILES)
    try:
        rows = _arrays_from_table(head)
        columns = _view_columns(entries, table, _CORPUS_ENTRIES, _CORPUS_TABLE)
        if not np.array_equal(rows["seq"], seq_ids):
            raise UserError(f"store {path} is damaged ({CORPUS_FILES[0]} does not list the "
                            "sequences of sequences.parquet); rebuild it with "
                            "`feature-browser build`")
        loss = rows["loss"] if len(rows["seq"]) else np.zeros((0, 0), np.float32)
        return CorpusView(loss=loss, n_latents=rows["n_latents"], **columns)
    except KeyError as err:
        raise UserError(f"store {path} is damaged (a corpus-view table lacks a column: {err}); "
                        "rebuild it with `feature-browser build`") from None


def _read_token_latents(path: Path) -> TokenLatents | None:
    if not (path / "token_latents.parquet").exists():
        return None
    columns = _arrays_from_table(_read_table(path, "token_latents.parquet"))
    if not len(columns.get("token", [])):
        return None
    return TokenLatents(**columns)


def read_meta(path: Path) -> StoreMeta:
    meta_file = Path(path) / "meta.json"
    if not meta_file.is_file():
        raise UserError(f"no store at {path} (missing meta.json); run `feature-browser build` first")
    try:
        raw = orjson.loads(meta_file.read_bytes())
    except orjson.JSONDecodeError:
        raise UserError(f"store {path} is damaged (meta.json is not valid JSON); rebuild it with "
                        "`feature-browser build`") from None
    if not isinstance(raw, dict):
        raise UserError(f"store {path} is damaged (meta.json is not an object); rebuild it with "
                        "`feature-browser build`")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"store {path} has schema version {raw.get('schema_version')}, this "
                        f"feature-browser reads {SCHEMA_VERSION}; rebuild it with `build`")
    names = {f.name for f in fields(StoreMeta)}
    try:
        return StoreMeta(**{k: v for k, v in raw.items() if k in names})
    except TypeError:
        missing = sorted(f.name for f in fields(StoreMeta) if f.name not in raw)
        raise UserError(f"store {path} is damaged (meta.json lacks {', '.join(missing)}); rebuild "
                        "it with `feature-browser build`") from None


def _read_table(path: Path, name: str) -> pa.Table:
    """One of the store's tables, whole (see open_parquet)."""
    return open_parquet(path, name).read()


def open_parquet(path: Path, name: str) -> pq.ParquetFile:
    """One of the store's parquet files, opened (read it whole or a batch at a time); a missing
    or truncated file (a copy cut short, a full disk) is one clear error instead of pyarrow's
    traceback."""
    file = path / name
    if not file.is_file():
        raise UserError(f"store {path} is incomplete ({name} is missing); rebuild it with "
                        "`feature-browser build`")
    try:
        return pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"store {path} is damaged ({name} is not a complete parquet file: "
                        f"{_short(err)}); rebuild it with `feature-browser build`") from None


def _short(err: BaseException) -> str:
    """pyarrow's message up to its first sentence (they run long, with parentheses of their
    own), so the one-line error stays whole."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text.split(". ")[0].rstrip(".")[:100]


def read_store(path: Path) -> StoreData:
    path = Path(path)
    meta = read_meta(path)
    lat = _arrays_from_table(_read_table(path, "latents.parquet"))
    ex = _arrays_from_table(_read_table(path, "examples.parquet"))
    seqs = _arrays_from_table(_read_table(path, "sequences.parquet"))
    vocab_table = _read_table(path, "vocab.parquet")
    try:
        lat.pop("latent")
        vocab = vocab_table.column("bytes").to_pylist()
        return StoreData(meta=meta, latents=LatentTable(**lat), examples=Examples(**ex),
                         seq_ids=seqs["seq"], seq_tokens=seqs["tokens"], vocab=vocab,
                         prompts=_read_prompts(path), corpus=_read_corpus(path, seqs["seq"]),
                         token_latents=_read_token_latents(path))
    except (KeyError, TypeError) as err:
        raise UserError(f"store {path} is damaged (a table lacks or has unknown columns: {err}); "
                        "rebuild it with `feature-browser build`") from None
