"""Labels from a delphi run folder (EleutherAI's delphi writes one file per latent):

    <run>/explanations/<module>_latent<N>.txt         the explanation, a JSON string
    <run>/scores/<scorer>/<module>_latent<N>.txt      the scorer's outputs, a JSON list of
                                                      {"activating", "prediction", "probability",
                                                       ...} (module names have "/" as "--")

`--explanations` takes the run folder or its explanations folder. Scores are recomputed from
the outputs with our definitions (generator/explain/scores.py: balanced accuracy, AUROC) for the
scorers we show, detection and fuzz (delphi's name for fuzzing). A run over several modules is
refused: the site is one SAE.

Memory: the explanations, and one score file at a time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from generator.errors import UserError
from generator.explain.labels import Label
from generator.explain.scores import auroc, balanced_accuracy

_NAME = re.compile(r"^(.*)_latent(\d+)\.txt$")
SCORERS = {"detection": "detection", "fuzzing": "fuzz"}
"""our scorer name -> delphi's folder."""


def read_delphi(path: Path) -> dict[int, Label]:
    """Every latent's label in the delphi run at `path` (module docstring)."""
    folder = path / "explanations" if (path / "explanations").is_dir() else path
    found = [(m.group(1), int(m.group(2)), f) for f in sorted(folder.glob("*.txt"))
             if (m := _NAME.match(f.name))]
    if not found:
        raise UserError(f"{path} holds no delphi explanations (<module>_latent<N>.txt files in "
                        "it or in its explanations/ folder); pass a delphi run folder")
    modules = sorted({module for module, _, _ in found})
    if len(modules) > 1:
        raise UserError(f"{path} holds explanations of {len(modules)} modules ({', '.join(modules[:3])}"
                        f"{', ...' if len(modules) > 3 else ''}); copy one module's files into a "
                        "folder of their own and pass that")
    run = folder.parent if folder.name == "explanations" else folder
    return {latent: Label(_explanation(file), "delphi", *_scores(run, file.name))
            for _, latent, file in found}


def _explanation(file: Path) -> str:
    try:
        text = orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError:
        raise UserError(f"{file} is not a JSON string, as delphi writes explanations; export it "
                        "again") from None
    if not isinstance(text, str):
        raise UserError(f"{file} holds no explanation text (a JSON string); export it again")
    return text.strip()


def _scores(run: Path, name: str) -> tuple[dict[str, float], dict[str, int]]:
    scores: dict[str, float] = {}
    examples: dict[str, int] = {}
    for ours, theirs in SCORERS.items():
        file = run / "scores" / theirs / name
        if not file.is_file():
            continue
        rows = _outputs(file)
        activating = [bool(r.get("activating")) for r in rows]
        predicted = [None if r.get("prediction") is None else int(bool(r["prediction"]))
                     for r in rows]
        probability = [p if isinstance(p := r.get("probability"), int | float) else None
                       for r in rows]
        examples[ours] = sum(p is not None for p in predicted)
        for key, value in ((ours, balanced_accuracy(activating, predicted)),
                           (ours + "_auroc", auroc(activating, probability))):
            if value is not None:
                scores[key] = value
    return scores, examples


def _outputs(file: Path) -> list[dict[str, Any]]:
    try:
        rows = orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError:
        rows = None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{file} is not a list of scorer outputs, as delphi writes them; export "
                        "it again")
    return rows


def load_imported(path: Path | None) -> tuple[dict[int, str] | None, dict[int, Label]]:
    """`--explanations PATH`: a delphi run folder gives labels (with their scores), a file
    (our jsonl or a Neuronpedia export: generator/inputs/explanations.py) texts."""
    from generator.inputs.explanations import load_explanations

    if path is None:
        return None, {}
    if Path(path).is_dir():
        return None, read_delphi(Path(path))
    return load_explanations(path), {}
