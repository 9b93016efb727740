"""The answer log: every answer of `feature-browser explain`, one JSON line each, appended to
`<store>/explain/answers.jsonl` the moment it arrives (format in docs/STORE.md, "Explanations").

A run stopped any way (Ctrl-C, SIGTERM, `kill -9`, a lost server) keeps every answer it got: a
line is written whole with one os.write, and a torn last line (a power cut) is cut off on the next
open. The next run reads the log first and asks only what it lacks: a request is known by its
key, its latent and the hash of its body, so a rerun with the same settings asks nothing, and a request made
with other settings (another model, prompt or store) is a new one.

The folder is not in the store's manifest (generator/files/manifest.py), so a rebuild of the
store carries it into the new store instead of deleting it; answers keep the identity of the
store they were asked about (`store_identity`), and only the current store's count.

Memory: the log is read a line at a time; its readers keep the records without the raw answer
text (a few hundred bytes an answer: ~50 MB for 16k latents with both scorers).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from generator.store.schema import StoreMeta

FOLDER = "explain"
LOG = "answers.jsonl"
LOG_FORMAT = 1
"""bumped when a record's fields change meaning."""


def log_path(store: Path) -> Path:
    return Path(store) / FOLDER / LOG


def body_hash(body: dict[str, Any]) -> str:
    """sha256 of a request's body with sorted keys (hex, 32 digits)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def request_key(latent: int, body: dict[str, Any]) -> str:
    """A request's identity, "<latent>:<body_hash>": two latents whose requests happen to be the
    same (a token they both fire on alone) keep an answer each."""
    return f"{latent}:{body_hash(body)}"


def store_identity(meta: StoreMeta) -> str:
    """Which store answers were about: the hash of its files' checksums (a rebuild that writes
    the same bytes keeps it), or of meta.json where a store predates checksums."""
    basis = orjson.dumps(meta.files, option=orjson.OPT_SORT_KEYS) if meta.files else meta.to_json()
    return hashlib.sha256(basis).hexdigest()[:16]


def read_log(store: Path) -> list[dict[str, Any]]:
    """Every whole record of the store's log, oldest first ([] when there is none)."""
    return list(iter_log(store))


def iter_log(store: Path, about: str | None = None,
             drop: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The log's whole records, oldest first, read a line at a time: only those about the
    store `about` (store_identity) when given, without the fields `drop` (the raw answers'
    `text`: what a reader does not need to hold). A line that is not a JSON object (a torn last
    line) is skipped."""
    try:
        f = open(log_path(store), "rb")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            try:
                record = orjson.loads(line) if line.strip() else None
            except orjson.JSONDecodeError:
                continue
            if not isinstance(record, dict) or record.get("v") != LOG_FORMAT or \
                    not isinstance(record.get("key"), str):
                continue
            if about is None or record.get("store") == about:
                yield {k: v for k, v in record.items() if k not in drop}


class AnswerLog:
    """The log opened for appending (one writer: the run's main thread)."""

    def __init__(self, store: Path):
        path = log_path(store)
        path.parent.mkdir(exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(self.fd).st_size
        if size and os.pread(self.fd, 1, size - 1) != b"\n":  # a torn last line: cut it off
            tail = os.pread(self.fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            os.ftruncate(self.fd, size - (len(tail) - tail.rfind(b"\n") - 1))

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line, at once (it survives the process being killed)."""
        os.write(self.fd, orjson.dumps({"v": LOG_FORMAT, **record},
                                       option=orjson.OPT_SORT_KEYS) + b"\n")

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
