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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from generator.errors import UserError
from generator.explain.labels import Label
from generator.explain.scores import scorer_scores

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
    return str(_load(file, lambda x: isinstance(x, str), "a JSON string (an explanation)")).strip()


def _load(file: Path, fits: Callable[[Any], bool], what: str) -> Any:
    """The JSON in one of delphi's files, refused in one line unless it `fits` (is `what`)."""
    try:
        data = orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError:
        data = None  # null fits nothing either
    if data is None or not fits(data):
        raise UserError(f"{file} is not {what}, as delphi writes it; export it again")
    return data


def _scores(run: Path, name: str) -> tuple[dict[str, float], dict[str, int]]:
    scores: dict[str, float] = {}
    examples: dict[str, int] = {}
    for ours, theirs in SCORERS.items():
        file = run / "scores" / theirs / name
        if not file.is_file():
            continue
        rows = _load(file, lambda x: isinstance(x, list) and all(isinstance(r, dict) for r in x),
                     "a list of scorer outputs")
        found, examples[ours] = scorer_scores(ours, [_row(r) for r in rows])
        scores.update(found)
    return scores, examples


def _row(output: dict[str, Any]) -> tuple[bool, int | None, float | None]:
    """One scorer output as (activating, answer 0/1 or None, P(1) or None)."""
    prediction, probability = output.get("prediction"), output.get("probability")
    return (bool(output.get("activating")), None if prediction is None else int(bool(prediction)),
            probability if isinstance(probability, int | float) else None)


def load_imported(path: Path | None) -> tuple[dict[int, str] | None, dict[int, Label]]:
    """`--explanations PATH`: a delphi run folder gives labels (with their scores), a file
    (our jsonl or a Neuronpedia export: generator/inputs/explanations.py) texts."""
    from generator.inputs.explanations import load_explanations

    if path is None:
        return None, {}
    if Path(path).is_dir():
        return None, read_delphi(Path(path))
    return load_explanations(path), {}
