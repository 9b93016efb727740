"""The prompt view's input: the prompts, read and tokenized (the compute is
generator/compute/promptview.py).

`--prompts FILE` (`.txt`: one prompt per line; `.jsonl`: a "text" field per line; a leading UTF-8
BOM dropped, blank prompts skipped) gives the prompts; without it the embedded demo model uses
`generator/demo/prompts.jsonl`. Each prompt is tokenized as the corpus is (no special tokens) and
given a leading BOS, and cut to `--ctx` tokens (BOS included).

The reader runs in `BuildConfig.validate`, before anything is loaded, so this module imports
neither torch nor the compute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import orjson

from generator.demo import DEMO_PROMPTS
from generator.errors import UserError
from generator.inputs.jsonl import field_problem
from generator.inputs.paths import check_input_path

log = logging.getLogger(__name__)

FORMATS = (".txt", ".jsonl")
MAX_PROMPTS = 1_000
"""the prompt view's ceiling: each prompt costs a forward pass and one per active latent (about
0.06 s a prompt on the demo, on 2 CPU cores: 10,000 prompts would take 10 minutes)."""
_HINT = 'use a .txt file (one prompt per line) or a .jsonl file (a "text" field per line)'


def read_prompts(path: Path) -> list[str]:
    """The prompts of a --prompts file, in order; refused with one line (UserError) when the file
    is missing, of another type, not UTF-8, a bad jsonl line, or holds no prompt."""
    path = Path(path).expanduser()
    check_input_path("--prompts", path, _HINT)
    if not path.is_file():
        raise UserError(f"prompts file {path} not found; {_HINT}")
    kind = path.suffix.lower()
    if kind not in FORMATS:
        raise UserError(f"prompts file {path}: {path.suffix or 'a file without extension'} is not "
                        f"a prompts format; {_HINT}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"prompts file {path} cannot be read ({err.strerror}); check it") from None
    try:
        text = raw.decode("utf-8-sig")  # editors on Windows add a BOM
    except UnicodeDecodeError as err:
        raise UserError(f"prompts file {path} is not UTF-8 text (byte {err.start}); re-save it "
                        "as UTF-8") from None
    prompts = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        prompt = line if kind == ".txt" else _jsonl_text(line, f"{path}:{n}")
        if prompt.strip():
            prompts.append(prompt)
    if not prompts:
        raise UserError(f"prompts file {path} holds no prompt; {_HINT}")
    if len(prompts) > MAX_PROMPTS:
        raise UserError(f"prompts file {path} holds {len(prompts):,} prompts, more than the "
                        f"{MAX_PROMPTS:,} the prompt view takes (a page each, and an ablation of "
                        "every latent active on it); keep the ones to look at closely, and pass "
                        "the rest as --corpus")
    return prompts


def _jsonl_text(line: str, where: str) -> str:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise UserError(f"{where} is not valid JSON; each line must be like "
                        '{"text": "a prompt"}') from None
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise UserError(f"{where} {field_problem(row, 'text')}; each line must be like "
                        '{"text": "a prompt"}')
    return str(row["text"])


def prompt_texts(path: Path | None, demo_model: bool) -> list[str] | None:
    """The build's prompts: the --prompts file, else the demo's with the demo model, else None."""
    if path is not None:
        return read_prompts(path)
    return read_prompts(DEMO_PROMPTS) if demo_model else None


def tokenize_prompts(texts: Sequence[str], encode: Callable[[list[str]], list[list[int]]],
                     bos_id: int, ctx: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each prompt as int32 ids, BOS first, at most `ctx` tokens; and whether it was cut."""
    ids = encode(list(texts))
    tokens = [np.asarray([bos_id, *row[:ctx - 1]], dtype=np.int32) for row in ids]
    return tokens, np.array([len(row) > ctx - 1 for row in ids], dtype=bool)
