"""Corpus stage: read text from files (or a dataset), tokenize, cut into fixed-length sequences.

Documents are tokenized without special tokens, concatenated with the BOS token between them (the
usual sae_lens / TransformerLens convention), and cut into chunks of `ctx - 1` tokens, each given
a leading BOS. So every sequence has exactly `ctx` tokens, no padding, and BOS marks both the start
and document boundaries. Positions holding BOS are excluded from every statistic (see `mask`).

No torch here: the output is a numpy array, so the render stage and tests can use this freely.
"""

from __future__ import annotations

import logging
import os
import random
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Bool, Int

from generator.errors import UserError
from generator.inputs.jsonl import field_problem
from generator.inputs.paths import check_input_path

log = logging.getLogger(__name__)

# Folders inside the standard library that are not representative source code (test data with odd
# encodings, vendored packages) and stay out of the demo corpus.
_STDLIB_SKIP = {"site-packages", "test", "tests", "idle_test", "__pycache__"}

Encode = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class Corpus:
    """Tokenized sequences, ready for the model."""

    tokens: Int[np.ndarray, "n_seqs ctx"]
    """token ids, int32; row s is sequence s (its global index everywhere downstream)."""
    bos_id: int
    """the BOS / separator id; positions holding it are excluded from statistics."""
    description: str
    """what the corpus was, for the store and the site."""
    n_docs: int
    """documents read to fill `tokens`."""

    @property
    def mask(self) -> Bool[np.ndarray, "n_seqs ctx"]:
        return self.tokens != self.bos_id


def stdlib_sources() -> list[Path]:
    """The Python standard library's own `.py` files, sorted: the demo corpus every install has."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP)
        files.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    if not files:
        raise UserError(f"no .py files under the standard library at {root}; pass --corpus PATH")
    return sorted(files)


def shuffled_stdlib(seed: int) -> list[Path]:
    """Standard-library files in a seeded order, so that a prefix of the corpus spans many modules
    rather than only the alphabetically first ones."""
    files = stdlib_sources()
    random.Random(seed).shuffle(files)
    return files


def _kind(path: Path) -> str | None:
    """The corpus format of a file name: one of FORMATS' keys, or None."""
    name = path.name.lower()
    return next((kind for kind in FORMATS if name.endswith(kind)), None)


FORMATS = (".txt.gz", ".jsonl.gz", ".txt", ".jsonl", ".parquet", ".py", ".md")
"""file types read as a corpus (longest first: .txt.gz before .txt)."""
TXT_PIECE_CHARS = 1 << 20
"""a .txt larger than STREAM_BYTES is read this many characters at a time (cut at a line end)."""
STREAM_BYTES = 8 << 20
"""smaller text files are read whole, exactly as before streaming existed (same sequences)."""


@dataclass(frozen=True)
class Piece:
    """A part of a long document: tokenized on its own, and followed by BOS only if `last`."""

    text: str
    last: bool


def _not_utf8(path: Path, where: str) -> UserError:
    return UserError(f"{path} is not UTF-8 text ({where}); convert it with `iconv -t utf-8` or "
                     "leave it out of --corpus")


def _open_text(path: Path) -> Any:
    """The file as text, gunzipped on the fly for .gz; 'utf-8-sig' drops a leading BOM (which
    Windows tools write and which would otherwise become a token, or break the first JSON line)."""
    import gzip

    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open("r", encoding="utf-8-sig")


def _read_utf8(path: Path) -> str:
    try:
        with _open_text(path) as f:
            return str(f.read())
    except UnicodeDecodeError as err:
        raise _not_utf8(path, f"byte {err.start}") from None
    except (OSError, EOFError) as err:  # a damaged .gz
        raise UserError(f"{path} cannot be read ({err}); check the file") from None


def _iter_txt(path: Path) -> Iterator[str | Piece]:
    """A .txt (or .txt.gz) as one document. A large one is streamed in pieces cut at line ends,
    so that only what --n-seqs needs is ever read and held."""
    if not path.name.lower().endswith(".gz") and path.stat().st_size <= STREAM_BYTES:
        yield _read_utf8(path)
        return
    try:
        with _open_text(path) as f:
            carry = ""
            while True:
                block = f.read(TXT_PIECE_CHARS)
                if not block:
                    break
                block = carry + block
                cut = block.rfind("\n") + 1
                if cut == 0:  # no line end in a whole piece: cut anywhere
                    cut = len(block)
                carry = block[cut:]
                if cut:
                    yield Piece(block[:cut], last=False)
            yield Piece(carry, last=True)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, f"byte {err.start} of a piece") from None
    except (OSError, EOFError) as err:
        raise UserError(f"{path} cannot be read ({err}); check the file") from None


def _iter_jsonl(path: Path, field: str | None = None) -> Iterator[str]:
    import orjson

    name = field or "text"
    lineno = 0
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise UserError(f"{path}:{lineno} is not valid JSON; fix or remove that "
                                    "line") from None
                if not isinstance(row, dict) or not isinstance(row.get(name), str):
                    raise UserError(f"{path}:{lineno} {field_problem(row, name)}; pass "
                                    "--text-field NAME, or fix that line")
                yield row[name]
    except UnicodeDecodeError as err:
        raise _not_utf8(path, f"line {lineno + 1}, byte {err.start}") from None
    except (OSError, EOFError) as err:
        raise UserError(f"{path} cannot be read ({err}); check the file") from None


def _iter_parquet(path: Path, field: str | None = None) -> Iterator[str | list[int]]:
    """Rows of one column, a batch at a time (a large file is never read whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{path} is not a readable parquet file ({str(err)[:100]})") from None
    col = _pick_column(file.schema_arrow.names, field, str(path))
    kind = file.schema_arrow.field(col).type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if not text and not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise UserError(f"column '{col}' of {path} holds {kind}, neither text nor lists of token "
                        "ids; pass --text-field with a text column")
    for batch in file.iter_batches(columns=[col], batch_size=1024):
        yield from _rows(batch.column(0), text)


SUPPORTED = ", ".join(FORMATS)


def _files_in(path: Path) -> list[Path]:
    if path.is_file():
        if _kind(path) is None:
            raise UserError(f"corpus {path}: {''.join(path.suffixes) or 'this file type'} is not "
                            f"a corpus format; supported: {SUPPORTED} (or a folder of them)")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
    if not files:
        raise UserError(f"no {SUPPORTED} files under {path} (nor a datasets save_to_disk "
                        "folder); pass a corpus file")
    return files


def iter_documents(files: Iterable[Path],
                   text_field: str | None = None) -> Iterator[str | list[int] | Piece]:
    """Documents from local files: text, pieces of a long text, or lists of token ids for
    pre-tokenized parquet."""
    for path in files:
        kind = _kind(path)
        if kind in (".jsonl", ".jsonl.gz"):
            yield from _iter_jsonl(path, text_field)
        elif kind == ".parquet":
            yield from _iter_parquet(path, text_field)
        elif kind in (".txt", ".txt.gz"):
            yield from _iter_txt(path)
        else:
            yield _read_utf8(path)


def _rows(column: Any, text: bool) -> Iterator[str | list[int]]:
    for row in column.to_pylist():
        if row is not None:
            yield row if text else list(row)


def _pick_column(names: list[str], field: str | None, where: str) -> str:
    if field is not None and field not in names:
        raise UserError(f"{where} has no column '{field}' (has {', '.join(names)}); pass "
                        "--text-field with one of them")
    candidates = [field] if field else ["tokens", "input_ids", "text", "content"]
    col = next((c for c in candidates if c in names), None)
    if col is None:
        raise UserError(f"{where} has no 'text', 'content', 'tokens' or 'input_ids' column (has "
                        f"{', '.join(names)}); pass --text-field NAME")
    return col


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `datasets`' save_to_disk (a Dataset or a DatasetDict)."""
    return path.is_dir() and any((path / f).is_file() for f in ("state.json", "dataset_dict.json"))


def _iter_saved_dataset(path: Path, field: str | None = None) -> Iterator[str | list[int]]:
    """Rows of a save_to_disk folder, a batch at a time from its memory-mapped arrow files (a
    DatasetDict gives its 'train' split, or its only one)."""
    import datasets
    import pyarrow as pa

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as err:  # a damaged folder: missing arrow files, bad state.json
        raise UserError(f"{path} is a damaged datasets folder ({str(err)[:100]}); save it again "
                        "with save_to_disk") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if "train" not in ds and len(splits) != 1:
            raise UserError(f"{path} holds the splits {', '.join(splits)} but no 'train'; pass "
                            f"the split's folder, e.g. {path / splits[0]}")
        ds = ds["train" if "train" in ds else splits[0]]
    col = _pick_column(list(ds.column_names), field, str(path))
    table = ds.data.table.select([col])
    kind = table.schema.field(col).type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if not text and not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise UserError(f"column '{col}' of {path} holds {kind}, neither text nor lists of token "
                        "ids; pass --text-field with a text column")
    for batch in table.to_batches(max_chunksize=1024):
        yield from _rows(batch.column(0), text)


def _iter_hf_dataset(name: str, text_field: str | None = None) -> Iterator[str]:
    """A hub dataset's train split, streamed: rows are fetched only as the corpus stage asks for
    them, so --n-seqs bounds what is downloaded."""
    from generator.inputs.hf import hub_reachable

    if not hub_reachable():
        raise UserError(f"corpus '{name}' is not a local path and the Hugging Face hub cannot be "
                        "reached; pass a local file, folder or save_to_disk folder")
    try:
        import datasets

        ds = datasets.load_dataset(name, split="train", streaming=True)
    except Exception as err:  # any hub failure is the same problem for the user
        raise UserError(f"corpus '{name}' is neither a local path nor a reachable Hugging Face "
                        f"dataset ({type(err).__name__}); pass a local file or folder") from None
    field = text_field or "text"
    for row in ds:
        text = row.get(field) if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise UserError(f"dataset '{name}' rows have no text field '{field}'; pass "
                            "--text-field NAME")
        yield text


def resolve_documents(spec: str | None, seed: int, text_field: str | None = None
                      ) -> tuple[Iterator[str | list[int] | Piece], str]:
    """Documents for a --corpus value (None = the standard library) and a description of them."""
    if spec is None:
        return iter_documents(shuffled_stdlib(seed)), "Python standard library (.py sources)"
    path = Path(spec).expanduser()
    check_input_path("--corpus", path, "save the corpus to a file (.txt, .jsonl, .parquet) or "
                     "a folder of them and pass that")
    if is_saved_dataset(path):
        return _iter_saved_dataset(path, text_field), str(path)
    if path.exists():
        return iter_documents(_files_in(path), text_field), str(path)
    if spec.startswith((".", "/", "~")) or Path(spec).suffix:
        raise UserError(f"corpus path {spec} does not exist; check the path")
    return _iter_hf_dataset(spec, text_field), f"hf:{spec}"


def chunk_documents(
    docs: Iterable[str | list[int] | Piece],
    encode: Encode,
    bos_id: int,
    ctx: int,
    n_seqs: int,
    batch_docs: int = 64,
) -> tuple[Int[np.ndarray, "n ctx"], int]:
    """Tokenize documents and cut them into at most `n_seqs` sequences of `ctx` tokens.

    Returns (tokens, documents read). Stops reading once `n_seqs` sequences are full, so a huge
    corpus costs only what is used. A trailing partial chunk is dropped (no padding).
    """
    if ctx < 2:
        raise UserError(f"--ctx {ctx} is too short; use at least 2 (BOS + one token)")
    body = ctx - 1
    need = n_seqs * body
    stream: list[int] = []
    n_docs = 0
    pending: list[str] = []

    def flush() -> None:
        if not pending:
            return
        for ids in encode(pending):
            stream.extend(ids)
            stream.append(bos_id)
        pending.clear()

    for doc in docs:
        if isinstance(doc, Piece):
            # a long document's pieces join without BOS; each is large, so tokenize it at once
            flush()
            n_docs += doc.last
            if doc.text:
                stream.extend(encode([doc.text])[0])
            if doc.last:
                stream.append(bos_id)
            if len(stream) >= need:
                break
            continue
        n_docs += 1
        if isinstance(doc, str):
            if doc:
                pending.append(doc)
            if len(pending) >= batch_docs:
                flush()
        else:
            flush()
            stream.extend(int(t) for t in doc)
            stream.append(bos_id)
        if len(stream) >= need:
            break
    flush()
    n_full = min(n_seqs, len(stream) // body)
    if n_full == 0:
        raise UserError(f"corpus is too short: {len(stream)} tokens make no sequence of {ctx}; "
                        "pass a larger corpus or a smaller --ctx")
    body_tokens = np.asarray(stream[: n_full * body], dtype=np.int32).reshape(n_full, body)
    bos = np.full((n_full, 1), bos_id, dtype=np.int32)
    return np.concatenate([bos, body_tokens], axis=1), n_docs


def document_sequences(
    docs: Iterable[str | list[int] | Piece],
    encode: Encode,
    bos_id: int,
    ctx: int,
    n_seqs: int,
    batch_docs: int = 64,
) -> tuple[Int[np.ndarray, "n ctx"], int]:
    """One document per sequence: BOS, then the document's first ctx-1 tokens, then BOS as
    padding (BOS positions are excluded from every statistic, so padding counts nowhere; the
    model never sees it before a real token, attention being causal). Empty documents are
    skipped. Returns (tokens, documents read); stops once `n_seqs` sequences are made. Memory:
    the sequences, plus one batch of `batch_docs` documents' tokens."""
    if ctx < 2:
        raise UserError(f"--ctx {ctx} is too short; use at least 2 (BOS + one token)")
    body = ctx - 1
    rows: list[list[int]] = []
    n_docs = 0
    pending: list[str] = []
    current: list[int] = []  # a long document read in pieces: its first tokens so far

    def add(ids: list[int]) -> None:
        if ids and len(rows) < n_seqs:
            rows.append([int(t) for t in ids[:body]])

    def flush() -> None:  # documents keep their order: pending texts go before anything else
        for ids in encode(pending) if pending else []:
            add(ids)
        pending.clear()

    for doc in docs:
        if not isinstance(doc, str):
            flush()
        if isinstance(doc, Piece):
            if doc.text and len(current) < body:
                current.extend(encode([doc.text])[0])
            if doc.last:
                n_docs += 1
                add(current)
                current = []
        elif isinstance(doc, str):
            n_docs += 1
            pending.append(doc)
            if len(pending) >= batch_docs:
                flush()
        else:
            n_docs += 1
            add(list(doc))
        if len(rows) >= n_seqs:
            break
    flush()
    if not rows:
        raise UserError("corpus holds no document with text in it; pass a corpus with text")
    tokens = np.full((len(rows), ctx), bos_id, dtype=np.int32)
    for i, ids in enumerate(rows):
        tokens[i, 1:1 + len(ids)] = ids
    return tokens, n_docs


def load_corpus(spec: str | None, encode: Encode, bos_id: int, ctx: int, n_seqs: int,
                seed: int, d_vocab: int | None = None, text_field: str | None = None,
                one_doc_per_seq: bool = False) -> Corpus:
    docs, description = resolve_documents(spec, seed, text_field)
    cut = document_sequences if one_doc_per_seq else chunk_documents
    tokens, n_docs = cut(docs, encode, bos_id, ctx, n_seqs)
    if d_vocab is not None and tokens.size and (tokens.min() < 0 or tokens.max() >= d_vocab):
        # only pre-tokenized corpora can get here: their ids were made by some other tokenizer
        bad = int(tokens.max()) if tokens.max() >= d_vocab else int(tokens.min())
        raise UserError(f"corpus {description} holds token id {bad}, outside the model's "
                        f"vocabulary 0..{d_vocab - 1}; it was tokenized for another model: pass "
                        "text, or ids from this model's tokenizer")
    if not np.any(tokens != bos_id):
        raise UserError("corpus holds no tokens besides BOS; pass a corpus with text in it")
    if len(tokens) < n_seqs:
        log.warning("corpus gave %d sequences of %d tokens, fewer than --n-seqs %d",
                    len(tokens), ctx, n_seqs)
    return Corpus(tokens=tokens, bos_id=bos_id, description=description, n_docs=n_docs)


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def vocab_bytes(tokenizer: Any, d_vocab: int) -> list[bytes]:
    """The raw bytes of every token id, so pages can show partial UTF-8 pieces faithfully.
    Handles byte-level BPE (GPT-2 style), SentencePiece ('▁', '<0xNN>') and plain vocabularies;
    ids beyond the tokenizer's vocabulary (padded embedding rows) get b''."""
    n = min(d_vocab, len(tokenizer))
    pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
    decoder = str(getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", ""))
    table = _byte_decoder() if "ByteLevel" in decoder else {}
    special = set(getattr(tokenizer, "all_special_tokens", []))
    out = []
    for piece in pieces:
        piece = piece or ""
        if table and piece not in special and all(c in table for c in piece):
            out.append(bytes(table[c] for c in piece))
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:5], 16)]))
        else:
            out.append(piece.replace("▁", " ").encode("utf-8"))
    return out + [b""] * (d_vocab - n)
