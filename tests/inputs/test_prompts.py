"""generator.inputs.prompts: the --prompts reader (.txt, .jsonl, BOM, blank lines), its one-line
refusals before any compute, the demo's prompts, and tokenization (BOS first, cut to ctx)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generator.config import BuildConfig
from generator.demo import DEMO_PROMPTS
from generator.errors import UserError
from generator.inputs.prompts import read_prompts, tokenize_prompts


def test_txt_one_prompt_per_line_bom_crlf_blank_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("\ufefffirst prompt\r\n\r\n  second  \n\n\tthird</script>\x00\n".encode())
    assert read_prompts(path) == ["first prompt", "  second  ", "\tthird</script>\x00"]


def test_jsonl_text_field_and_bom(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"text": "def f():\n    return 1\n", "id": 3}, {"text": "\u202eevil"}]
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(json.dumps(r).encode() for r in rows) + b"\n\n")
    assert read_prompts(path) == ["def f():\n    return 1\n", "\u202eevil"]


@pytest.mark.parametrize("name, content, needle", [
    ("missing.txt", None, "not found"),
    ("p.csv", b"a,b\n", "not a prompts format"),
    ("p.txt", b"\xff\xfe bad", "not UTF-8"),
    ("p.txt", b"\n  \n", "holds no prompt"),
    ("p.jsonl", b'{"text": "ok"}\nnot json\n', "p.jsonl:2 is not valid JSON"),
    ("p.jsonl", b'{"prompt": "x"}\n', "p.jsonl:1 has no field 'text' (has prompt)"),
    ("p.jsonl", b'["x"]\n', "is a JSON list, not an object with a 'text' field"),
    ("p.jsonl", b'{"text": 12345}\n', "p.jsonl:1 has 'text' holding a number, not a string"),
    ("p.jsonl", b'{"text": null}\n', "has 'text' holding null, not a string"),
])
def test_bad_files_refused_with_one_line(tmp_path, name, content, needle):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as err:
        read_prompts(path)
    assert needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError):  # before anything is loaded
        BuildConfig(prompts=path).validate()


def test_cli_refuses_a_bad_prompts_file_before_compute(tmp_path, capsys):
    from generator.cli import main

    code = main(["build", "--prompts", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "s"),
                 "--store", str(tmp_path / "st")])
    err = capsys.readouterr().err
    assert code == 2 and "prompts file" in err and "not found" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists() and not (tmp_path / "st").exists()


def test_demo_prompts_ship_and_read():
    prompts = read_prompts(DEMO_PROMPTS)
    assert 4 <= len(prompts) <= 12 and all("\n" in p for p in prompts)


def test_tokenize_adds_bos_and_cuts_to_ctx():
    def encode(texts):
        return [[ord(c) for c in t] for t in texts]

    tokens, cut = tokenize_prompts(["abc", "abcdefgh"], encode, 0, 5)
    assert [t.tolist() for t in tokens] == [[0, 97, 98, 99], [0, 97, 98, 99, 100]]
    assert cut.tolist() == [False, True] and tokens[0].dtype == np.int32
