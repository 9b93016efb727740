"""generator.inputs.explanations: our jsonl and Neuronpedia's export, and each bad file's
one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.errors import UserError
from generator.inputs.explanations import load_explanations


def test_load_explanations_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"latent": 3, "explanation": " indentation "}\n\n'
                    '{"latent": 1, "explanation": "</script>"}\n', encoding="utf-8")
    assert load_explanations(path) == {3: "indentation", 1: "</script>"}


def test_load_explanations_neuronpedia_export(tmp_path: Path) -> None:
    records = [
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": "12", "description": "dogs",
         "explanationModelName": "gpt-4o-mini", "typeName": "oai_token-act-pair"},
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": 4, "description": "cats"},
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": "12", "description": "later"},
    ]
    listed = tmp_path / "np.json"
    listed.write_text(json.dumps(records), encoding="utf-8")
    assert load_explanations(listed) == {12: "dogs", 4: "cats"}
    lines = tmp_path / "np.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    assert load_explanations(lines) == {12: "dogs", 4: "cats"}


@pytest.mark.parametrize("content, message", [
    ("{not json\n", "is not a JSON object"),
    ('[{"index": "x", "description": "a"}]', "no valid latent id"),
    ('{"latent": 1}\n', "no explanation text"),
    ('{"latent": -1, "explanation": "a"}\n', "no valid latent id"),
    ("[1, 2]", "is not a JSON object"),
    ("[{", "not valid JSON"),
])
def test_load_explanations_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as err:
        load_explanations(path)
    assert "\n" not in str(err.value)


def test_load_explanations_missing_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_explanations(tmp_path / "nope.jsonl")
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"latent": 1, "explanation": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        load_explanations(bad)


def test_load_explanations_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "expl.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"latent": 3, "explanation": "indentation"}\n')
    assert load_explanations(path) == {3: "indentation"}
