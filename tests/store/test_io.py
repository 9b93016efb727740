"""generator.store.io: every optional table written and read back exactly (dtypes included) or left out
whole, and a damaged or incomplete store refused in one line that says to rebuild it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.cli import main
from generator.store.io import read_store, write_store
from tests.fake_corpus import with_corpus
from tests.fake_store import make_store
from tests.helpers import assert_one_line_error, reseal


def test_corpus_view_round_trip(tmp_path):
    data = with_corpus(make_store())
    write_store(data, tmp_path / "store")
    back = read_store(tmp_path / "store").corpus
    assert back is not None and data.corpus is not None
    for name in ("loss", "n_latents", "row", "pos", "latent", "act", "s_row", "s_latent",
                 "s_n_active", "s_max_act", "s_sum_act"):
        got, want = getattr(back, name), getattr(data.corpus, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want)
    write_store(make_store(), tmp_path / "plain")  # a store without it has none of the files
    assert read_store(tmp_path / "plain").corpus is None
    assert not list((tmp_path / "plain").glob("corpus*"))


def test_a_store_whose_corpus_view_lists_other_sequences_is_refused(tmp_path):
    import pyarrow.parquet as pq

    from generator.errors import UserError

    write_store(with_corpus(make_store()), tmp_path / "store")
    path = tmp_path / "store" / "corpus_seqs.parquet"
    table = pq.read_table(path)
    seq = table.column("seq").to_numpy().copy()
    seq[[0, 1]] = seq[[1, 0]]
    pq.write_table(table.set_column(0, "seq", [seq]), path)
    with pytest.raises(UserError, match="damaged .corpus_seqs.parquet differs from what the build"):
        read_store(tmp_path / "store")
    reseal(tmp_path / "store")  # a store written so by a faulty build: the reader's own check
    with pytest.raises(UserError, match="damaged .corpus_seqs.parquet does not list"):
        read_store(tmp_path / "store")


def test_token_index_store_round_trip(tmp_path: Path) -> None:
    from generator.store.io import read_store, write_store

    data = make_store()
    write_store(data, tmp_path / "store")
    back, want = read_store(tmp_path / "store").token_latents, data.token_latents
    assert back is not None and want is not None
    for name in ("token", "latent", "sum_act", "count"):
        assert getattr(back, name).dtype == getattr(want, name).dtype
        np.testing.assert_array_equal(getattr(back, name), getattr(want, name))
    write_store(make_store(optional=False), tmp_path / "bare")
    assert read_store(tmp_path / "bare").token_latents is None


def test_truncated_store_for_render(capsys, tmp_path):
    from generator.store.io import write_store
    from tests.fake_store import make_store

    for name in ("latents.parquet", "examples.parquet", "vocab.parquet", "meta.json"):
        store = tmp_path / f"store-{name}"
        write_store(make_store(), store)
        damaged = store / name
        damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
        code = main(["render", "--quiet", "--store", str(store), "--out", str(tmp_path / "site")])
        err = capsys.readouterr().err
        assert_one_line_error(code, err, str(store), "rebuild")
        if name != "meta.json":  # the checksum check, then the reader's own behind it
            assert f"({name} differs from what the build wrote" in err, err
            reseal(store)
            code = main(["render", "--quiet", "--store", str(store), "--out",
                         str(tmp_path / "site")])
            err = capsys.readouterr().err
            assert_one_line_error(code, err, str(store), "not a complete parquet file")
        assert err.rstrip().endswith("rebuild it with `feature-browser build`"), err  # whole
        assert err.count("(") == err.count(")"), err
    (store / "meta.json").unlink()
    code = main(["render", "--quiet", "--store", str(store), "--out", str(tmp_path / "site")])
    assert_one_line_error(code, capsys.readouterr().err, "no store")
    assert not (tmp_path / "site").exists()


def test_examples_sharing_rows_are_written_group_by_group_and_read_back_whole(tmp_path):
    """The build's examples share a row per (sequence, latent) pair (SharedRows); the store
    writes them one row group at a time and reads back every example's own row."""
    import dataclasses

    import pyarrow.parquet as pq

    from generator.store.io import _write_examples
    from generator.store.schema import SharedRows

    data = make_store()
    ex = data.examples
    dense = np.asarray(ex.acts)
    base, index = np.unique(dense, axis=0, return_inverse=True)
    assert len(base) < len(dense)  # some rows are shared (at least the all-zero ones)
    dl = np.asarray(ex.dloss)
    shared = dataclasses.replace(ex, acts=SharedRows(base, index.ravel()),
                                 dloss=SharedRows(dl, np.arange(len(dl))))
    _write_examples(shared, tmp_path / "examples.parquet", group=7)
    file = pq.ParquetFile(tmp_path / "examples.parquet")
    assert file.metadata.num_row_groups == -(-len(dense) // 7)
    write_store(dataclasses.replace(data, examples=shared), tmp_path / "store")
    back = read_store(tmp_path / "store").examples
    np.testing.assert_array_equal(back.acts, dense)
    np.testing.assert_array_equal(back.dloss, dl)
    assert back.acts.dtype == dense.dtype and back.kind == ex.kind


@pytest.mark.parametrize("key", [3, -1, slice(2, 9), np.array([4, 0, 4]), (5, 2), (slice(1, 4), 0),
                                 (np.array([1, 2]), slice(0, 3)), (7, slice(None, -1)),
                                 (np.array([1, 2, 9]), np.array([0, 5, 3])),  # pointwise
                                 (slice(None), np.array([True, False] * 3))])
def test_shared_rows_read_like_the_array_they_stand_for(key):
    from generator.store.schema import SharedRows

    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    index = np.array([2, 0, 2, 3, 1, 1, 0, 3, 2, 0])
    rows = SharedRows(base, index)
    np.testing.assert_array_equal(rows[key], base[index][key])
    assert rows.shape == (10, 6) and len(rows) == 10
    mask = np.arange(10) % 3 == 0
    np.testing.assert_array_equal(rows[mask], base[index][mask])
    np.testing.assert_array_equal(np.asarray(rows), base[index])


def test_null_seqs_round_trip_and_absent_in_an_older_store(tmp_path):
    """latents.parquet's null_seqs: a fixed-size list of 8 int32 per latent, read back exactly;
    a store without the column (written before it was kept) reads as None."""
    from dataclasses import replace

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = make_store()
    rng = np.random.default_rng(0)
    nulls = rng.choice(data.seq_ids, size=(data.latents.d_sae, 8)).astype(np.int32)
    nulls[0, 5:] = -1
    nulls[1] = -1
    write_store(replace(data, latents=replace(data.latents, null_seqs=nulls)), tmp_path / "new")
    column = pq.read_schema(tmp_path / "new" / "latents.parquet").field("null_seqs").type
    assert column == pa.list_(pa.int32(), 8)  # fixed size: 8
    back = read_store(tmp_path / "new").latents.null_seqs
    assert back is not None and back.dtype == np.int32
    np.testing.assert_array_equal(back, nulls)
    write_store(replace(data, latents=replace(data.latents, null_seqs=None)), tmp_path / "old")
    assert "null_seqs" not in pq.read_schema(tmp_path / "old" / "latents.parquet").names
    assert read_store(tmp_path / "old").latents.null_seqs is None
