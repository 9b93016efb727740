"""Explanations (a label per latent) from a file: our jsonl or a Neuronpedia export.

    {"latent": 12, "explanation": "..."}               one JSON object per line (.jsonl)
    [{"index": "12", "description": "...", ...}, ...]  Neuronpedia's explanation export (a JSON
                                                       list, or the same objects one per line)

Read before anything is computed (build) or rendered (render), so that a bad file is one clear
error; the text is shown escaped, like corpus text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from generator.errors import UserError
from generator.inputs.paths import check_input_path


def load_explanations(path: Path) -> dict[int, str]:
    """Explanations from jsonl `{"latent": int, "explanation": str}` or a Neuronpedia export.

    Neuronpedia's explanation export is a JSON list (or jsonl) of objects carrying `index` (a
    string or an int) and `description` (plus modelId, layer, ... which are ignored). When a latent
    has several explanations, the first one wins.
    """
    path = Path(path)
    check_input_path("--explanations", path, "pass a .jsonl file or a Neuronpedia explanation "
                     "export (.json)")
    if not path.is_file():
        raise UserError(f"explanations file {path} not found; pass an existing .jsonl file or a "
                        "Neuronpedia explanation export (.json)")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # editors on Windows add a BOM
    except UnicodeDecodeError as err:
        raise UserError(f"explanations file {path} is not UTF-8 ({err.reason}); re-save it as "
                        "UTF-8") from None
    out: dict[int, str] = {}
    for where, record in _explanation_records(text, path):
        latent, explanation = _explanation_fields(record, where)
        out.setdefault(latent, explanation)
    return out


def _explanation_records(text: str, path: Path) -> Iterator[tuple[str, Any]]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = orjson.loads(stripped)
        except orjson.JSONDecodeError as err:
            raise UserError(f"explanations file {path} is not valid JSON ({err}); fix it or "
                            "export it again") from None
        for n, record in enumerate(records):
            yield f"{path} entry {n}", record
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{n}", orjson.loads(line)
            except orjson.JSONDecodeError:
                raise UserError(f"{path}:{n} is not a JSON object; each line must be like "
                                '{"latent": 12, "explanation": "..."}') from None


def _explanation_fields(record: Any, where: str) -> tuple[int, str]:
    hint = ('expected {"latent": 12, "explanation": "..."} or Neuronpedia\'s '
            '{"index": "12", "description": "..."}')
    if not isinstance(record, dict):
        raise UserError(f"{where} is not a JSON object; {hint}")
    latent = next((record[k] for k in ("latent", "index", "feature") if k in record), None)
    explanation = next((record[k] for k in ("explanation", "description") if k in record), None)
    if isinstance(latent, str) and latent.strip().isdigit():
        latent = int(latent)
    if isinstance(latent, bool) or not isinstance(latent, int) or latent < 0:
        raise UserError(f"{where} has no valid latent id (got {latent!r}); {hint}")
    if not isinstance(explanation, str):
        raise UserError(f"{where} has no explanation text; {hint}")
    return latent, explanation.strip()


def check_explanations(explanations: dict[int, str], d_sae: int, source: Path | None = None) -> None:
    """Refuse explanations for latents this SAE does not have (a file for another SAE); `source`:
    the file, named in the message."""
    bad = sorted(i for i in explanations if not 0 <= i < d_sae)
    if bad:
        where = f"in {source} " if source is not None else ""
        raise UserError(f"explanations {where}name latent {bad[0]} but this SAE has {d_sae} "
                        f"latents (0..{d_sae - 1}); pass the explanations of this SAE")
