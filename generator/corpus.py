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

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet", ".py", ".md")
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


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path} is not UTF-8 text (byte {err.start}); convert it with "
            f"`iconv -t utf-8` or leave it out of --corpus"
        ) from None


def _iter_jsonl(path: Path, field: str = "text") -> Iterator[str]:
    import orjson

    for lineno, line in enumerate(_read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UserError(f"{path}:{lineno} is not valid JSON; fix or remove that line") from None
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise UserError(f"{path}:{lineno} has no string field '{field}'; each line needs one")
        yield row[field]


def _iter_parquet(path: Path) -> Iterator[str | list[int]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = table.column_names
    for col in ("tokens", "input_ids"):
        if col in names:
            yield from (list(row) for row in table.column(col).to_pylist())
            return
    for col in ("text", "content"):
        if col in names:
            yield from table.column(col).to_pylist()
            return
    raise UserError(f"{path} has no 'text', 'content', 'tokens' or 'input_ids' column (has {names})")


def _files_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    if not files:
        raise UserError(f"no {', '.join(TEXT_SUFFIXES)} files under {path}; pass a corpus file")
    return files


def iter_documents(files: Iterable[Path]) -> Iterator[str | list[int]]:
    """Documents from local files: text, or lists of token ids for pre-tokenized parquet."""
    for path in files:
        if path.suffix == ".jsonl":
            yield from _iter_jsonl(path)
        elif path.suffix == ".parquet":
            yield from _iter_parquet(path)
        else:
            yield _read_utf8(path)


def _iter_hf_dataset(name: str) -> Iterator[str]:
    from generator.models import offline

    if offline():
        raise UserError(f"corpus '{name}' is not a local path and the hub is offline; "
                        "pass a local .txt/.jsonl/.parquet file or folder")
    try:
        import datasets

        ds = datasets.load_dataset(name, split="train", streaming=True)
    except Exception as err:  # any hub failure is the same problem for the user
        raise UserError(f"corpus '{name}' is neither a local path nor a reachable Hugging Face "
                        f"dataset ({type(err).__name__}); pass a local file or folder") from None
    for row in ds:
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise UserError(f"dataset '{name}' rows have no 'text' field; pass a local corpus")
        yield text


def resolve_documents(spec: str | None, seed: int) -> tuple[Iterator[str | list[int]], str]:
    """Documents for a --corpus value (None = the standard library) and a description of them."""
    if spec is None:
        return iter_documents(shuffled_stdlib(seed)), "Python standard library (.py sources)"
    path = Path(spec)
    if path.exists():
        return iter_documents(_files_in(path)), str(path)
    if spec.startswith((".", "/", "~")) or Path(spec).suffix in TEXT_SUFFIXES:
        raise UserError(f"corpus path {spec} does not exist; check the path")
    return _iter_hf_dataset(spec), f"hf:{spec}"


def chunk_documents(
    docs: Iterable[str | list[int]],
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


def load_corpus(spec: str | None, encode: Encode, bos_id: int, ctx: int, n_seqs: int,
                seed: int, d_vocab: int | None = None) -> Corpus:
    docs, description = resolve_documents(spec, seed)
    tokens, n_docs = chunk_documents(docs, encode, bos_id, ctx, n_seqs)
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
