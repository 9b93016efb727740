"""Corpus stage: sequence cutting, document separators, token bytes for display."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import UserError
from generator.inputs.corpus import chunk_documents, stdlib_sources, vocab_bytes

BOS = 0


def fake_encode(texts: list[str]) -> list[list[int]]:
    """One token per character, ids offset past BOS."""
    return [[ord(c) % 97 + 1 for c in t] for t in texts]


def test_sequences_are_bos_led_and_cut_from_the_joined_stream():
    docs = ["abcdef", "ghij", "klmnopqrstu"]
    tokens, n_docs = chunk_documents(docs, fake_encode, BOS, ctx=5, n_seqs=100)
    stream = []
    for ids in fake_encode(docs):
        stream += ids + [BOS]
    assert n_docs == 3
    assert tokens.shape == (len(stream) // 4, 5) and tokens.dtype == np.int32
    assert (tokens[:, 0] == BOS).all()
    np.testing.assert_array_equal(tokens[:, 1:].reshape(-1), stream[: tokens.shape[0] * 4])


def test_reading_stops_once_enough_sequences():
    def endless():
        while True:
            yield "x" * 50

    tokens, n_docs = chunk_documents(endless(), fake_encode, BOS, ctx=11, n_seqs=7, batch_docs=1)
    assert tokens.shape == (7, 11) and n_docs <= 3


def test_pretokenized_documents_pass_through():
    tokens, _ = chunk_documents([[5, 6, 7], [8, 9]], fake_encode, BOS, ctx=3, n_seqs=10)
    np.testing.assert_array_equal(tokens, [[0, 5, 6], [0, 7, 0], [0, 8, 9]])


def test_too_short_and_bad_ctx_are_user_errors():
    with pytest.raises(UserError, match="too short"):
        chunk_documents(["ab"], fake_encode, BOS, ctx=128, n_seqs=1)
    with pytest.raises(UserError, match="--ctx"):
        chunk_documents(["ab"], fake_encode, BOS, ctx=1, n_seqs=1)


def test_stdlib_corpus_is_source_code_without_tests():
    files = stdlib_sources()
    assert len(files) > 300 and all(f.suffix == ".py" for f in files)
    assert not any("site-packages" in f.parts or "test" in f.parts for f in files)


def test_vocab_bytes_of_a_byte_level_tokenizer():
    """Byte-level BPE pieces map back to their raw bytes, including partial UTF-8."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = ["def f(x):\n    return x  # é 漢字 🙂\n"] * 20
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>")
    table = vocab_bytes(fast, len(fast) + 3)
    assert len(table) == len(fast) + 3 and table[-1] == b""
    assert table[0] == b"<|endoftext|>"
    ids = fast("漢字 🙂\n", add_special_tokens=False)["input_ids"]
    assert b"".join(table[i] for i in ids) == "漢字 🙂\n".encode()
    singles = {table[i] for i in range(len(fast))}
    assert bytes([0xF0]) in singles  # a lone lead byte: not valid UTF-8 on its own


# ---------------------------------------------------------------------------------------------
# corpora as researchers have them


def read_all(path, text_field=None):
    from generator.inputs.corpus import resolve_documents

    docs, _ = resolve_documents(str(path), 0, text_field)
    return list(docs)


def test_gzip_text_field_and_bom(tmp_path):
    import gzip
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"body": "first", "id": 1}, {"body": "second", "id": 2}]
    lines = "\n".join(json.dumps(r) for r in rows)
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\ufeff" + lines)
    assert read_all(tmp_path / "a.jsonl.gz", "body") == ["first", "second"]
    (tmp_path / "bom.jsonl").write_text("\ufeff" + json.dumps({"text": "x"}) + "\n", "utf-8")
    assert read_all(tmp_path / "bom.jsonl") == ["x"]
    (tmp_path / "bom.txt").write_text("\ufeffdef f(): pass\n", "utf-8")
    assert read_all(tmp_path / "bom.txt") == ["def f(): pass\n"]
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\ufeffline one\nline two\n")
    assert "".join(p.text for p in read_all(tmp_path / "b.txt.gz")) == "line one\nline two\n"
    pq.write_table(pa.table({"body": ["p", "q"], "text": ["no", "no"]}), tmp_path / "c.parquet")
    assert read_all(tmp_path / "c.parquet", "body") == ["p", "q"]
    with pytest.raises(UserError, match="has no field 'text' .has body, id.; pass --text-field"):
        read_all(tmp_path / "a.jsonl.gz")
    with pytest.raises(UserError, match="no column 'nope'.*body, text"):
        read_all(tmp_path / "c.parquet", "nope")


@pytest.mark.parametrize("name", ["data.json", "data.csv", "data.arrow", "data.tsv.gz"])
def test_unknown_file_types_are_refused_with_the_supported_list(tmp_path, name):
    (tmp_path / name).write_text('{"text": "x"}')
    with pytest.raises(UserError, match=r"not a corpus format; supported: .txt.gz, .jsonl.gz, "
                                        r".txt, .jsonl, .parquet"):
        read_all(tmp_path / name)


def test_large_txt_is_streamed(tmp_path):
    """A 48 MB .txt with a few sequences wanted: only the first pieces are read, memory stays
    small, and pieces join without separators (the text is one document)."""
    import time
    import tracemalloc

    from generator.inputs.corpus import TXT_PIECE_CHARS, resolve_documents

    big = tmp_path / "big.txt"
    line = "x = compute(alpha, beta)  # a line of code\n"
    with big.open("w") as f:
        for _ in range(48 * (1 << 20) // len(line)):
            f.write(line)
    start = time.perf_counter()
    tracemalloc.start()
    docs, _ = resolve_documents(str(big), 0)
    tokens, n_docs = chunk_documents(docs, fake_encode, BOS, ctx=129, n_seqs=16)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert tokens.shape == (16, 129) and n_docs == 0  # still inside the first document
    assert (tokens[:, 1:] != BOS).all()
    assert peak < 40 * TXT_PIECE_CHARS, peak  # a few pieces, not 48 MB of text and its tokens
    assert time.perf_counter() - start < 5
    pieces = read_all(big)
    assert "".join(p.text for p in pieces) == big.read_text()
    assert [p.last for p in pieces].count(True) == 1 and pieces[-1].last


def test_datasets_save_to_disk_folders(tmp_path):
    """A `datasets` save_to_disk folder, as a Dataset or a DatasetDict, text or token ids."""
    import datasets

    texts = [f"document number {i}" for i in range(5)]
    datasets.Dataset.from_dict({"text": texts, "n": list(range(5))}).save_to_disk(tmp_path / "a")
    assert read_all(tmp_path / "a") == texts
    datasets.Dataset.from_dict({"body": texts}).save_to_disk(tmp_path / "b")
    assert read_all(tmp_path / "b", "body") == texts
    with pytest.raises(UserError, match="no 'text', 'content', 'tokens' or 'input_ids' column"):
        read_all(tmp_path / "b")
    split = {"train": datasets.Dataset.from_dict({"input_ids": [[5, 6, 7], [8, 9]]}),
             "test": datasets.Dataset.from_dict({"input_ids": [[1]]})}
    datasets.DatasetDict(split).save_to_disk(tmp_path / "c")
    assert read_all(tmp_path / "c") == [[5, 6, 7], [8, 9]]
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": ["only"]})}
                         ).save_to_disk(tmp_path / "d")
    assert read_all(tmp_path / "d") == ["only"]
    two = {name: datasets.Dataset.from_dict({"text": [name]}) for name in ("x", "y")}
    datasets.DatasetDict(two).save_to_disk(tmp_path / "e")
    with pytest.raises(UserError, match="splits x, y but no 'train'"):
        read_all(tmp_path / "e")
    (tmp_path / "a" / "state.json").write_text("{")
    with pytest.raises(UserError, match="damaged datasets folder"):
        read_all(tmp_path / "a")


def test_hub_dataset_is_streamed_only_as_far_as_needed(monkeypatch):
    """Only the network is faked: the rows the hub would stream, counted as they are taken."""
    import datasets

    from generator.inputs.corpus import resolve_documents

    taken = []

    def fake_load_dataset(name, split, streaming):
        assert (name, split, streaming) == ("someone/corpus", "train", True)
        for i in range(10_000):
            taken.append(i)
            yield {"text": f"row {i} " * 10}

    monkeypatch.setattr("generator.inputs.hf.hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    docs, description = resolve_documents("someone/corpus", 0)
    tokens, _ = chunk_documents(docs, fake_encode, BOS, ctx=33, n_seqs=8)
    assert description == "hf:someone/corpus" and tokens.shape == (8, 33)
    assert len(taken) <= 64 + 1  # one tokenizer batch, not the whole dataset
    monkeypatch.setattr("generator.inputs.hf.hub_reachable", lambda timeout=3.0: False)
    docs, _ = resolve_documents("someone/corpus", 0)
    with pytest.raises(UserError, match="hub cannot be reached"):
        next(iter(docs))


def test_one_document_per_sequence():
    """--one-doc-per-seq: BOS, the document's first ctx-1 tokens, BOS padding; empty documents
    skipped; a long document read in pieces gives one sequence; reading stops at n_seqs."""
    from generator.inputs.corpus import Piece, document_sequences

    docs = ["abcdefgh", "", "xy", [7, 8, 9], Piece("long text ", False), Piece("more", True), "z"]
    tokens, n_docs = document_sequences(iter(docs), fake_encode, BOS, ctx=5, n_seqs=100,
                                        batch_docs=2)
    enc = fake_encode
    want = [[BOS, *enc(["abcd"])[0]], [BOS, *enc(["xy"])[0], BOS, BOS], [BOS, 7, 8, 9, BOS],
            [BOS, *enc(["long"])[0]], [BOS, *enc(["z"])[0], BOS, BOS, BOS]]
    assert tokens.dtype == np.int32
    assert tokens.tolist() == want
    assert n_docs == 6  # the empty one read, the two pieces one document
    first_two, read = document_sequences(iter(docs), fake_encode, BOS, ctx=5, n_seqs=2,
                                         batch_docs=1)
    assert first_two.tolist() == want[:2] and read == 3
    with pytest.raises(UserError, match="no document with text"):
        document_sequences(iter(["", ""]), fake_encode, BOS, ctx=5, n_seqs=3)
