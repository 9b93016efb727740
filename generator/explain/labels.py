"""The labels a site shows, read from the answer log (generator/explain/answers.py): per latent its
latest explanation of this store, the model that wrote it, and its scores. Pure Python and
numpy-free: `render` calls it, with no endpoint and no torch.

Memory: the log's records without their raw text (a few hundred bytes an answer).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.explain.answers import iter_log, store_identity
from generator.explain.scores import scorer_scores
from generator.store.schema import StoreMeta


@dataclass(frozen=True)
class Label:
    """A latent's generated explanation and how well it scored."""

    explanation: str
    model: str
    """the chat model that wrote it (as given to --model)."""
    scores: dict[str, float] = field(default_factory=dict)
    """"detection", "fuzzing" (balanced accuracy) and "detection_auroc", "fuzzing_auroc", each
    present only where defined (docs/STATISTICS.md, "Explanation scores")."""
    examples: dict[str, int] = field(default_factory=dict)
    """per scorer, how many held-out examples it answered for."""


def read_labels(store: Path, meta: StoreMeta,
                imported: dict[int, Label] | None = None) -> dict[int, Label]:
    """Every latent's label from `store`'s answer log ({} when it has none), with `imported`
    ones (a delphi run's: generator/explain/delphi.py) over them."""
    me = store_identity(meta)
    latest: dict[str, dict[str, Any]] = {}
    for record in iter_log(store, me, drop=("text",)):  # the last answer to a request wins
        latest.pop(record["key"], None)
        latest[record["key"]] = record
    explained: dict[int, dict[str, Any]] = {}
    scored: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in latest.values():
        if record.get("task") == "explain" and record.get("ok"):
            explained[int(record["latent"])] = record
        elif record.get("ok") and isinstance(record.get("of"), str):
            scored[record["of"]].append(record)
    labels = {i: _label(r, scored.get(r["key"], [])) for i, r in sorted(explained.items())}
    return {**labels, **(imported or {})}


def _label(explain: dict[str, Any], scoring: list[dict[str, Any]]) -> Label:
    scores: dict[str, float] = {}
    examples: dict[str, int] = {}
    for task in ("detection", "fuzzing"):
        rows = [(bool(a), p, q) for r in scoring if r.get("task") == task
                for a, p, q in r.get("samples", [])]
        if rows:
            scores_of_task, examples[task] = scorer_scores(task, rows)
            scores.update(scores_of_task)
    return Label(str(explain.get("explanation", "")), str(explain.get("model", "")), scores,
                 examples)
