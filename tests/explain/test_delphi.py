"""Importing a delphi run folder (`--explanations DIR`): explanations, and scores recomputed from
delphi's scorer outputs by hand here."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from generator.cli import main
from generator.explain.delphi import read_delphi
from generator.store.io import write_store
from tests.fake_store import make_store

MODULE = "layers.6.mlp"
DETECTION = [  # activating, prediction, probability
    (True, 1, 0.9), (True, 0, 0.4), (True, 1, 0.8), (False, 0, 0.1), (False, 1, 0.6),
    (True, None, None)]  # a malformed batch: no prediction, counted nowhere
FUZZ = [(True, 1, None), (False, 0, None), (False, 0, None), (True, 1, None)]


def outputs(rows: list[tuple]) -> bytes:
    return orjson.dumps([{"str_tokens": ["a"], "activations": [0.0], "distance": 1,
                          "activating": a, "prediction": p, "probability": q,
                          "correct": None if p is None else p == a} for a, p, q in rows])


def delphi_run(root: Path, module: str = MODULE) -> Path:
    (root / "explanations").mkdir(parents=True, exist_ok=True)
    for scorer in ("detection", "fuzz"):
        (root / "scores" / scorer).mkdir(parents=True, exist_ok=True)
    (root / "explanations" / f"{module}_latent3.txt").write_bytes(orjson.dumps(
        "</script><b>tight end</b>"))
    (root / "explanations" / f"{module}_latent4.txt").write_bytes(orjson.dumps("commas"))
    (root / "scores/detection" / f"{module}_latent3.txt").write_bytes(outputs(DETECTION))
    (root / "scores/fuzz" / f"{module}_latent3.txt").write_bytes(outputs(FUZZ))
    return root


def test_explanations_and_scores_by_hand(tmp_path: Path) -> None:
    labels = read_delphi(delphi_run(tmp_path / "run"))
    assert sorted(labels) == [3, 4] and labels[4].scores == {}
    three = labels[3]
    assert three.explanation == "</script><b>tight end</b>" and three.model == "delphi"
    # detection: TPR 2/3 (the unanswered one left out), TNR 1/2; AUROC: 0.9, 0.4, 0.8 against
    # 0.1, 0.6 -> wins 2 + 0 + 2 of 6 ... 0.9>0.1,0.9>0.6, 0.4>0.1, 0.8>0.1, 0.8>0.6 = 5 of 6
    assert three.scores["detection"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert three.scores["detection_auroc"] == pytest.approx(5 / 6)
    assert three.scores["fuzzing"] == 1.0 and "fuzzing_auroc" not in three.scores
    assert three.examples == {"detection": 5, "fuzzing": 4}
    assert read_delphi(tmp_path / "run" / "explanations") == labels  # either folder


def test_render_imports_a_delphi_run(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_store(make_store(), store)
    run = delphi_run(tmp_path / "run")
    assert main(["render", "--store", str(store), "--out", str(tmp_path / "site"),
                 "--explanations", str(run), "--quiet"]) == 0
    page = (tmp_path / "site/features/3.html").read_text()
    assert "<p class=expl>&lt;/script&gt;&lt;b&gt;tight end&lt;/b&gt;</p>" in page
    assert "written by <span class=mdl>delphi</span>" in page and "fuzzing 1.00" in page


def test_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = tmp_path / "store"
    write_store(make_store(), store)
    run = delphi_run(tmp_path / "two")
    delphi_run(run, "layers.8.mlp")
    bad = tmp_path / "bad"
    (bad / "explanations").mkdir(parents=True)
    (bad / "explanations" / "x_latent1.txt").write_bytes(b"not json")
    (tmp_path / "empty").mkdir()
    other = delphi_run(tmp_path / "other")  # another SAE's: a latent this one does not have
    (other / "explanations" / f"{MODULE}_latent99.txt").write_bytes(orjson.dumps("wide"))
    for folder, message in ((run, "holds explanations of 2 modules"),
                            (other, "name latent 99 but this SAE has 12 latents"),
                            (bad, "is not a JSON string"),
                            (tmp_path / "empty", "holds no delphi explanations")):
        assert main(["render", "--store", str(store), "--out", str(tmp_path / "site"),
                     "--explanations", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
