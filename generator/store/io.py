"""Reading and writing a store (the tables are generator/store/schema.py; the files and their
columns are documented in docs/STORE.md).

Writes go to a temporary folder renamed into place, so a failed build never leaves half a store;
reads turn a missing, truncated or foreign file into one clear error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from generator.errors import UserError
from generator.files.atomic import atomic_dir
from generator.files.outputs import STORE, STORE_MARKER
from generator.store.schema import (
    SCHEMA_VERSION,
    CorpusView,
    Examples,
    LatentTable,
    Prompts,
    StoreData,
    StoreMeta,
    TokenLatents,
)


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


def arrays_from_table(table: pa.Table) -> dict[str, Any]:
    """A table's columns as numpy arrays (fixed-size-list columns as 2-D arrays)."""
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
    with atomic_dir(path, STORE.names) as tmp:
        # the proof that this folder is a store, so that the next build may replace it
        (tmp / STORE_MARKER).write_bytes(b"")
        _write_tables(data, tmp)
        # last, with a checksum of every file written before it
        files = {f.name: file_sha256(f) for f in sorted(tmp.iterdir()) if f.name != STORE_MARKER}
        (tmp / "meta.json").write_bytes(replace(data.meta, files=files).to_json())


def file_sha256(path: Path) -> str:
    """The file's sha256, hex (read in 1 MB blocks: constant memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_store(path: Path, meta: StoreMeta) -> None:
    """Refuse, in one line, a store one of whose files is missing or differs from what the build
    wrote (a flipped byte, a partial copy), by the checksums in meta.json. A store from before
    checksums were kept is read as it is. Time: one read of every file (about 1 s per GB)."""
    files = meta.files or {}
    if not isinstance(files, dict) or not all(
            isinstance(v, str) and isinstance(k, str) and k == Path(k).name not in ("", "..")
            for k, v in files.items()):
        raise UserError(f"store {path} is damaged (meta.json's files is not a table of "
                        "checksums); rebuild it with `feature-browser build`")
    for name, digest in sorted(files.items()):
        file = Path(path) / name
        if not file.is_file():
            raise UserError(f"store {path} is incomplete ({name} is missing); rebuild it with "
                            "`feature-browser build`")
        if file_sha256(file) != digest:
            raise UserError(f"store {path} is damaged ({name} differs from what the build wrote: "
                            "checksum mismatch); rebuild it with `feature-browser build`, or copy "
                            "it again")


def _write_tables(data: StoreData, tmp: Path) -> None:
    """Every table of the store (meta.json excepted) into `tmp`."""
    latents = {"latent": np.arange(data.latents.d_sae, dtype=np.int32), **_present(data.latents)}
    pq.write_table(_table_from_arrays(latents), tmp / "latents.parquet")
    _write_examples(data.examples, tmp / "examples.parquet")
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


EXAMPLE_GROUP_ROWS = 1 << 20
"""examples.parquet is written one row group of at most this many rows at a time."""


def _write_examples(ex: Examples, path: Path, group: int = EXAMPLE_GROUP_ROWS) -> None:
    """examples.parquet, one row group at a time: pyarrow holds one group's columns (about
    group x ctx x 8 bytes, with Δloss), never a second copy of every example's per-token arrays
    (E x ctx x 4 bytes each: 37.6 GB for a 1M-latent SAE's 73 M examples)."""
    columns = _present(ex)
    tables = (_table_from_arrays({k: v[lo:lo + group] for k, v in columns.items()})
              for lo in range(0, max(len(ex.latent), 1), group))
    first = next(tables)
    with pq.ParquetWriter(path, first.schema) as writer:
        writer.write_table(first)
        for table in tables:
            writer.write_table(table)


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
    head, entries, summary = (read_table(path, name) for name in PROMPT_FILES)
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
    head, entries, table = (read_table(path, name) for name in CORPUS_FILES)
    try:
        rows = arrays_from_table(head)
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
    columns = arrays_from_table(read_table(path, "token_latents.parquet"))
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


def read_table(path: Path, name: str) -> pa.Table:
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
    verify_store(path, meta)
    lat = arrays_from_table(read_table(path, "latents.parquet"))
    ex = arrays_from_table(read_table(path, "examples.parquet"))
    seqs = arrays_from_table(read_table(path, "sequences.parquet"))
    vocab_table = read_table(path, "vocab.parquet")
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
