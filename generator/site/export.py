"""`feature-browser export --format neuronpedia`: a store as the JSON batches Neuronpedia imports.

The layout is the output of SAEDashboard's `NeuronpediaRunner` (jbloomAus/SAEDashboard,
`sae_dashboard/neuronpedia/neuronpedia_runner.py`; the objects are the `to_dict` forms of
`NeuronpediaDashboardBatch` / `Feature` / `Activation` in `neuronpedia_dashboard.py`, filled as in
`neuronpedia_converter.py`), which Neuronpedia's importer
(`convert-saedashboard-to-neuronpedia-export.py`) reads:

    DIR/batch-0.json, batch-1.json, ...   one JSON object per file: model_id, layer, sae_set,
                                          sae_id_suffix, features[] (latents B*i .. B*(i+1)-1)
    DIR/run_settings.json                 what was exported, and from which store
    DIR/.feature-browser-export           marks DIR as an export, so the next export may replace it

What each field holds, and which ones stay empty because a store does not have them, is listed at
`_feature` below and in README.md ("Export to Neuronpedia").

Memory: the store is streamed a batch of B latents at a time (`--batch-size`, default 128), never
read whole. Peak beyond the interpreter is about

    n_kept * ctx * w_tok                       sequences.parquet: the token ids of the kept sequences
  + d_vocab * ~100 B                           the vocabulary, raw and decoded
  + B * E * ctx * ~40 B                        one batch: E = k + n_intervals * m examples per latent
                                               (activations, token-string references, the JSON text)
  + B * (8 * (n_bins + logit_bins) + 24 * n_logits) B     one batch of latents.parquet rows
  + READ_ROWS * ctx * 8 B                      one read of examples.parquet

with w_tok the stored token id width (4 or 8 bytes). At the defaults (k 20, 10 x 5 interval
samples, ctx 128) a batch of 128 latents is about 50 MB, whatever d_sae is; only the first term
grows with the corpus (24,576 kept sequences of 128 tokens: 12-25 MB).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from generator import __version__
from generator.errors import UserError
from generator.files.atomic import atomic_dir
from generator.files.outputs import EXPORT, EXPORT_MARKER, check_output, check_writable
from generator.files.signals import check_interrupted
from generator.site.tokens import decode_sequence
from generator.store.io import (
    arrays_from_table,
    open_parquet,
    read_meta,
    read_table,
    verify_store,
)
from generator.store.schema import EXAMPLE_INTERVAL, EXAMPLE_TOP, StoreMeta

log = logging.getLogger(__name__)

FORMATS = ("neuronpedia",)
RUN_SETTINGS = "run_settings.json"
READ_ROWS = 2048
"""rows of examples.parquet read at a time."""
DEFAULT_BATCH_SIZE = 128
"""latents per batch file, as SAEDashboard's `n_features_at_a_time`."""
REPLACEMENT = "\ufffd"
"""what a byte that is no UTF-8 character (a byte-level BPE piece that never completes) becomes."""

_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
_LATENT_COLUMNS = ["n_active", "max_act", "hist", "interval_counts", "logit_pos_ids",
                   "logit_pos_vals", "logit_neg_ids", "logit_neg_vals", "logit_hist", "logit_lo",
                   "logit_hi"]
_EXAMPLE_COLUMNS = ["latent", "kind", "interval", "rank", "seq", "acts"]


@dataclass(frozen=True)
class ExportReport:
    out: Path
    n_features: int
    n_batches: int


def export_store(fmt: str, store: Path, out: Path, batch_size: int = DEFAULT_BATCH_SIZE
                 ) -> ExportReport:
    """Write `store` to `out` in format `fmt`; every check runs before anything is written, and
    `out` is replaced only once the whole export is complete."""
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; supported: {', '.join(FORMATS)} "
                        "(e.g. --format neuronpedia)")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size}); e.g. --batch-size "
                        f"{DEFAULT_BATCH_SIZE}")
    store_r, out_r = _check_paths(store, out)
    return export_neuronpedia(store_r, out_r, batch_size)


def _check_paths(store: Path, out: Path) -> tuple[Path, Path]:
    store_r, out_r = Path(store).expanduser().resolve(), Path(out).expanduser().resolve()
    if not store_r.is_dir():
        raise UserError(f"no store at {store} (not a folder); pass --store STORE, a folder written "
                        "by `feature-browser build`")
    # a missing / damaged / other-version store: one clear line
    verify_store(store_r, read_meta(store_r))
    if out_r == store_r or out_r in store_r.parents:
        raise UserError(f"--out {out_r} would replace the store {store_r}; choose another folder, "
                        "e.g. --out neuronpedia")
    if store_r in out_r.parents:
        raise UserError(f"--out {out_r} is inside the store {store_r}; put the export beside it, "
                        "e.g. --out neuronpedia")
    check_output("--out", out_r, EXPORT)
    check_writable("--out", out_r)
    return store_r, out_r


# ---------------------------------------------------------------------------------------------
# the export


def export_neuronpedia(store: Path, out: Path, batch_size: int = DEFAULT_BATCH_SIZE
                       ) -> ExportReport:
    """Stream `store` into `out` as SAEDashboard's NeuronpediaRunner output (see module doc)."""
    meta = read_meta(store)
    latents_file = _parquet(store, "latents.parquet")
    examples_file = _parquet(store, "examples.parquet")
    if meta.d_sae < 1 or latents_file.metadata.num_rows != meta.d_sae:
        raise _damaged(store, f"latents.parquet has {latents_file.metadata.num_rows} rows, "
                              f"meta.json says d_sae = {meta.d_sae}")
    seqs = arrays_from_table(read_table(store, "sequences.parquet"))
    seq_ids, seq_tokens = np.asarray(seqs["seq"]), np.asarray(seqs["tokens"])
    vocab = _Vocab(read_table(store, "vocab.parquet").column("bytes").to_pylist())
    if seq_tokens.size and (seq_tokens.min() < 0 or seq_tokens.max() >= vocab.size):
        raise _damaged(store, "sequences.parquet holds token ids outside the vocabulary")
    header = _batch_header(meta)
    n_batches = -(-meta.d_sae // batch_size)
    log.info("exporting %d latents of %s to %s: %d batch file(s) of up to %d latents",
             meta.d_sae, store, out, n_batches, batch_size)
    try:
        with atomic_dir(out, EXPORT.names) as tmp:
            (tmp / EXPORT_MARKER).write_bytes(b"")
            batches = zip(_row_chunks(latents_file, _LATENT_COLUMNS, batch_size, store),
                          _example_batches(examples_file, meta.d_sae, batch_size, store),
                          strict=False)
            written = 0
            for number, (lat, ex) in enumerate(batches):
                lo = number * batch_size
                features = _features(meta, lo, lat, ex, seq_ids, seq_tokens, vocab, store)
                (tmp / f"batch-{number}.json").write_bytes(
                    orjson.dumps({**header, "features": features}, option=_JSON))
                log.debug("batch-%d.json: latents %d-%d", number, lo, lo + len(features) - 1)
                written += len(features)
                check_interrupted()
            if written != meta.d_sae:
                raise _damaged(store, f"latents.parquet holds {written} latents, meta.json says "
                                      f"d_sae = {meta.d_sae}")
            (tmp / RUN_SETTINGS).write_bytes(orjson.dumps(
                _run_settings(meta, store, batch_size, n_batches),
                option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
    except OSError as err:
        raise UserError(f"cannot write the export to {out} ({err.strerror or err}); free some "
                        "space or choose a folder you can write to") from None
    log.info("wrote %d batch file(s) and %s to %s", n_batches, RUN_SETTINGS, out)
    return ExportReport(out=out, n_features=meta.d_sae, n_batches=n_batches)


def _batch_header(meta: StoreMeta) -> dict[str, Any]:
    """The batch object's own fields (NeuronpediaDashboardBatch): which model / layer / SAE."""
    match = re.match(r"blocks\.(\d+)\.", meta.hook)
    return {
        "model_id": meta.model,
        "layer": int(match.group(1)) if match else 0,
        "sae_set": meta.sae,
        "sae_id_suffix": None,
    }


def _run_settings(meta: StoreMeta, store: Path, batch_size: int, n_batches: int) -> dict[str, Any]:
    """SAEDashboard writes its NeuronpediaRunnerConfig here; we write the keys that have a meaning
    for a store under the same names, and the store's whole meta.json."""
    settings = meta.settings
    return {
        **_batch_header(meta),
        "exported_by": f"feature-browser {__version__}",
        "store": str(store),
        "sae_path": meta.sae,
        "hook_name": meta.hook,
        "d_sae": meta.d_sae,
        "huggingface_dataset_path": meta.corpus,
        "n_prompts_total": meta.n_seqs,
        "n_tokens_in_prompt": meta.ctx,
        "n_features_at_a_time": batch_size,
        "n_batches": n_batches,
        "top_acts_group_size": settings.get("k"),
        "n_quantiles": settings.get("n_intervals"),
        "quantile_group_size": settings.get("m"),
        "store_meta": asdict(meta),
    }


# ---------------------------------------------------------------------------------------------
# one batch of features


def _features(meta: StoreMeta, lo: int, lat: dict[str, Any], ex: dict[str, Any] | None,
              seq_ids: np.ndarray, seq_tokens: np.ndarray, vocab: _Vocab, store: Path
              ) -> list[dict[str, Any]]:
    n = len(lat["n_active"])
    for name in ("logit_pos_ids", "logit_neg_ids"):
        ids = lat[name]
        if ids.size and ids.max() >= vocab.size:
            raise _damaged(store, f"latents.parquet {name} holds ids outside the vocabulary")
    starts = (np.searchsorted(ex["latent"], np.arange(lo, lo + n + 1)) if ex is not None
              else np.zeros(n + 1, dtype=np.int64))
    return [_feature(meta, lo + j, {k: v[j] for k, v in lat.items()}, ex, int(starts[j]),
                     int(starts[j + 1]), seq_ids, seq_tokens, vocab, store) for j in range(n)]


def _feature(meta: StoreMeta, index: int, row: dict[str, Any], ex: dict[str, Any] | None,
             start: int, stop: int, seq_ids: np.ndarray, seq_tokens: np.ndarray, vocab: _Vocab,
             store: Path) -> dict[str, Any]:
    """One latent as NeuronpediaDashboardFeature.to_dict().

    Filled from the store: feature_index (latent id); pos_str / pos_values and neg_str /
    neg_values (the top positive and most negative logit effects d_i @ W_U, best first: token
    strings and values); frac_nonzero (density, n_active / N); freq_hist_data_bar_heights /
    _values (the activation histogram over (0, max]: counts and bin centres; empty for a dead
    latent); logits_hist_data_bar_heights / _values (the logit-effect histogram over the
    vocabulary: counts and bin centres); n_prompts_total, n_tokens_in_prompt, dataset (n_seqs,
    ctx, corpus); activations (top examples, then interval samples from the highest interval).

    Left empty, because a store does not hold them: neuron_alignment_* (the model neurons the
    decoder row aligns with: needs W_dec), correlated_neurons_* (activation correlation with model
    neurons: never computed), correlated_features_* (Pearson / cosine correlation of activations
    between latents: the store's neighbours are co-activation Jaccard and decoder cosine, which
    are different measures and would be mislabelled there), decoder_weights_dist (per-head split
    of a hook_z decoder row) and vector (the decoder row itself: W_dec is not in the store).
    """
    n_active, max_act = int(row["n_active"]), float(row["max_act"])
    hist, logit_hist = row["hist"], row["logit_hist"]
    logit_lo, logit_hi = float(row["logit_lo"]), float(row["logit_hi"])
    alive = n_active > 0 and max_act > 0
    pos_ok, neg_ok = row["logit_pos_ids"] >= 0, row["logit_neg_ids"] >= 0
    return {
        "feature_index": index,
        "neuron_alignment_indices": [],
        "neuron_alignment_values": [],
        "neuron_alignment_l1": [],
        "correlated_neurons_indices": [],
        "correlated_neurons_l1": [],
        "correlated_neurons_pearson": [],
        "correlated_features_indices": [],
        "correlated_features_l1": [],
        "correlated_features_pearson": [],
        "pos_str": [vocab.single(t) for t in row["logit_pos_ids"][pos_ok]],
        "pos_values": np.ascontiguousarray(row["logit_pos_vals"][pos_ok]),
        "neg_str": [vocab.single(t) for t in row["logit_neg_ids"][neg_ok]],
        "neg_values": np.ascontiguousarray(row["logit_neg_vals"][neg_ok]),
        "frac_nonzero": n_active / meta.n_tokens if meta.n_tokens else 0.0,
        "freq_hist_data_bar_heights": hist.tolist() if alive else [],
        "freq_hist_data_bar_values": _centres(0.0, max_act, len(hist)) if alive else [],
        "logits_hist_data_bar_heights": logit_hist.tolist(),
        "logits_hist_data_bar_values": _centres(logit_lo, logit_hi, len(logit_hist)),
        "n_prompts_total": meta.n_seqs,
        "n_tokens_in_prompt": meta.ctx,
        "dataset": meta.corpus,
        "decoder_weights_dist": [],
        "vector": [],
        "activations": _activations(ex, start, stop, max_act, row["interval_counts"], meta,
                                    seq_ids, seq_tokens, vocab, store) if ex is not None else [],
    }


def _centres(lo: float, hi: float, n: int) -> np.ndarray:
    """Centres of n equal-width bins over [lo, hi] (float32: the precision of the data)."""
    return (lo + (np.arange(n) + 0.5) * ((hi - lo) / n)).astype(np.float32)


def _activations(ex: dict[str, Any], start: int, stop: int, max_act: float,
                 interval_counts: np.ndarray, meta: StoreMeta, seq_ids: np.ndarray,
                 seq_tokens: np.ndarray, vocab: _Vocab, store: Path) -> list[dict[str, Any]]:
    """A latent's shown examples as NeuronpediaDashboardActivation.to_dict(), in SAEDashboard's
    order: the top group first, then the interval groups from the highest interval down.

    bin_min / bin_max / bin_contains: for top examples -1 / the latent's max / -1, as SAEDashboard
    writes its "TOP ACTIVATIONS" group; for interval j of n, j*max/n / (j+1)*max/n / the fraction
    of the corpus's sequences whose maximum lies in that interval (SAEDashboard's is a fraction of
    token positions; the store counts sequences, which is how its samples are drawn).
    tokens / values: the whole sequence (ctx tokens) and the latent's activation at each position.
    qualifying_token_index: the position of the example's maximum, the token that qualified it.
    """
    if stop <= start:
        return []
    kinds = ex["kind"][start:stop]
    if any(k not in (EXAMPLE_TOP, EXAMPLE_INTERVAL) for k in kinds):
        raise _damaged(store, "examples.parquet has an unknown example kind")
    is_interval = np.array([k == EXAMPLE_INTERVAL for k in kinds])
    interval = ex["interval"][start:stop].astype(np.int64)
    order = np.lexsort((ex["rank"][start:stop], -interval, is_interval))
    n_intervals = len(interval_counts)
    rows = np.searchsorted(seq_ids, ex["seq"][start:stop])
    if np.any(rows >= len(seq_ids)) or np.any(seq_ids[np.minimum(rows, len(seq_ids) - 1)]
                                              != ex["seq"][start:stop]):
        raise _damaged(store, "examples.parquet points to sequences that sequences.parquet lacks")
    out = []
    for e in order:
        acts = np.ascontiguousarray(ex["acts"][start + e])
        if is_interval[e]:
            j = int(interval[e])
            if not 0 <= j < n_intervals:
                raise _damaged(store, "examples.parquet has an interval index out of range")
            bins = (np.float32(j * max_act / n_intervals),
                    np.float32((j + 1) * max_act / n_intervals),
                    int(interval_counts[j]) / meta.n_seqs if meta.n_seqs else 0.0)
        else:
            bins = (np.float32(-1), np.float32(max_act), -1.0)
        out.append({
            "bin_min": bins[0],
            "bin_max": bins[1],
            "bin_contains": bins[2],
            "tokens": vocab.sequence(seq_tokens[rows[e]]),
            "values": acts,
            "qualifying_token_index": int(np.argmax(acts)),
        })
    return out


class _Vocab:
    """Token strings. Tokens are corpus text: kept as data (JSON escaping is all they need)."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces
        self.size = len(pieces)
        self.whole: list[str | None] = []
        for piece in pieces:
            try:
                self.whole.append(piece.decode("utf-8"))
            except UnicodeDecodeError:
                self.whole.append(None)

    def single(self, token_id: int) -> str:
        """One token on its own (logit tables): bytes that are no character become U+FFFD."""
        text = self.whole[int(token_id)]
        return text if text is not None else self.pieces[int(token_id)].decode("utf-8", "replace")

    def sequence(self, ids: np.ndarray) -> list[str]:
        """A run of tokens; a character whose bytes span several tokens (byte-level BPE) is given
        to the token holding its first byte, as on the site; bytes that never complete one become
        U+FFFD."""
        ids_list = ids.tolist()
        texts = [self.whole[t] for t in ids_list]
        if None not in texts:
            return cast(list[str], texts)
        parts = decode_sequence([self.pieces[t] for t in ids_list])
        return ["".join(p if isinstance(p, str) else REPLACEMENT for p in token) for token in parts]


# ---------------------------------------------------------------------------------------------
# streaming the store


def _damaged(store: Path, what: str) -> UserError:
    return UserError(f"store {store} is damaged ({what}); rebuild it with `feature-browser build`")


def _parquet(store: Path, name: str) -> pq.ParquetFile:
    return open_parquet(store, name)


def _tables(file: pq.ParquetFile, columns: list[str], rows: int, store: Path
            ) -> Iterator[pa.Table]:
    """The file's rows in order, `rows` at a time (the last table may be shorter); a damaged
    file or a missing column is one clear error."""
    missing = [c for c in columns if c not in set(file.schema_arrow.names)]
    if missing:
        raise _damaged(store, f"a table lacks the column {', '.join(missing)}")
    pending: list[pa.RecordBatch] = []
    have = 0
    try:
        for batch in file.iter_batches(batch_size=rows, columns=columns):
            pending.append(batch)
            have += batch.num_rows
            while have >= rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, rows)
                rest = table.slice(rows)
                pending, have = rest.to_batches(), rest.num_rows
    except (pa.ArrowException, OSError) as err:
        raise _damaged(store, str(err).splitlines()[0][:120]) from None
    if have:
        yield pa.Table.from_batches(pending)


def _row_chunks(file: pq.ParquetFile, columns: list[str], rows: int, store: Path
                ) -> Iterator[dict[str, Any]]:
    for table in _tables(file, columns, rows, store):
        yield arrays_from_table(table)


def _example_batches(file: pq.ParquetFile, d_sae: int, batch_size: int, store: Path
                     ) -> Iterator[dict[str, Any] | None]:
    """Per batch of latents [lo, lo + batch_size): its rows of examples.parquet (None if none).
    The file is sorted by latent, so one forward read serves every batch."""
    reader = _tables(file, _EXAMPLE_COLUMNS, READ_ROWS, store)
    carry: pa.Table | None = None
    last = -1
    for lo in range(0, d_sae, batch_size):
        hi = min(lo + batch_size, d_sae)
        parts: list[pa.Table] = []
        while True:
            if carry is None:
                carry = next(reader, None)
                if carry is None:
                    break
                latent = carry.column("latent").to_numpy()
                if latent[0] < last or np.any(np.diff(latent) < 0):
                    raise _damaged(store, "examples.parquet is not sorted by latent")
                if latent[0] < 0 or latent[-1] >= d_sae:
                    raise _damaged(store, "examples.parquet has a latent id outside 0..d_sae-1")
                last = int(latent[-1])
            cut = int(np.searchsorted(carry.column("latent").to_numpy(), hi))
            if cut:
                parts.append(carry.slice(0, cut))
            if cut < carry.num_rows:
                carry = carry.slice(cut)
                break
            carry = None
        yield arrays_from_table(pa.concat_tables(parts)) if parts else None
