"""The array fast paths of the render (written for 1,048,576-latent sites) equal the plain
definitions they replace, on random and awkward inputs: NaN, ties, unsorted rows, ids beyond a
table, values past sig's common case."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from generator.site import search
from generator.site.builder import PageBuilder, _ascending, sorted_positions
from generator.site.charts import finite3, finite3s, round3, round3s, sig, signed, signeds, sigs
from generator.site.codec import varint_code, varint_runs
from generator.site.contexts import DEFAULT_SHOWING
from generator.site.writer import SiteWriter, _token_counts
from generator.store.schema import EXAMPLE_TOP
from tests.fake_store import make_store

AWKWARD = [0.0, -0.0, 1e-9, 0.12345, -3.14159, 999.4, 999.6, -999.96, 1000.0, 1234.5, 2e6,
           -5e7, math.nan, math.inf, -math.inf, 0.0005, 123456.0]


@pytest.mark.parametrize("seed", range(5))
def test_batched_number_formats_equal_their_scalar_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate([np.array(AWKWARD), rng.normal(0, 10.0 ** rng.integers(-4, 7), 50)])
    rng.shuffle(values)
    for chunk in (values, values[np.isfinite(values) & (np.abs(values) < 1000)], values[:0]):
        assert sigs(chunk) == [sig(float(x)) for x in chunk]
        assert sigs(chunk.astype(np.float32)) == [sig(float(x)) for x in chunk.astype(np.float32)]
        assert sigs(chunk.tolist()) == [sig(x) for x in chunk.tolist()]
        assert signeds(chunk.astype(np.float32)) == [signed(float(x))
                                                     for x in chunk.astype(np.float32)]
        finite = chunk[np.isfinite(chunk)]
        assert round3s(finite) == [round3(float(x)) for x in finite]
        got, want = finite3s(chunk), [finite3(float(x)) for x in chunk]
        assert [str(x) for x in got] == [str(x) for x in want]  # -0.0 and 0.0 told apart


@pytest.mark.parametrize("seed", range(30))
def test_sorted_positions_equal_searchsorted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, rng.integers(1, 200), rng.integers(0, 40)))
    values = rng.integers(-10, 260, rng.integers(0, 400))  # below, between, above the ids
    assert np.array_equal(sorted_positions(ids, values), np.searchsorted(ids, values))


@pytest.mark.parametrize("seed", range(30))
def test_ascending_is_the_lexsort_identity(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 15))
    keys = tuple(rng.integers(0, 3, n) for _ in range(3))
    for rows in (keys, tuple(k[np.lexsort(keys[::-1])] for k in keys)):
        assert _ascending(rows) == np.array_equal(np.lexsort(rows[::-1]), np.arange(n))


def test_pages_of_a_store_whose_examples_are_not_in_order() -> None:
    """A store whose example rows are shuffled shows each latent the same examples (the
    render sorts what it cannot just check)."""
    data = make_store()
    order = np.random.default_rng(3).permutation(len(data.examples.seq))
    ex = data.examples
    shuffled = dataclasses.replace(
        ex, latent=ex.latent[order], kind=[ex.kind[k] for k in order],
        interval=ex.interval[order], rank=ex.rank[order], seq=ex.seq[order],
        acts=np.asarray(ex.acts)[order],
        dloss=None if ex.dloss is None else np.asarray(ex.dloss)[order])
    def keys(e: object) -> tuple[np.ndarray, ...]:
        top = np.array([k == EXAMPLE_TOP for k in e.kind])  # type: ignore[attr-defined]
        return (e.latent, (~top).astype(np.int8), e.interval, e.rank)  # type: ignore[attr-defined]

    assert _ascending(keys(ex)) and not _ascending(keys(shuffled))  # both paths run
    plain = PageBuilder(data, {})
    mixed = PageBuilder(dataclasses.replace(data, examples=shuffled), {})
    assert mixed.is_top.tolist() == [k == EXAMPLE_TOP for k in shuffled.kind]
    for i in range(data.latents.d_sae):
        assert np.array_equal(order[mixed.example_rows(i)], plain.example_rows(i)), i
        assert mixed.examples_of(i, html=False) == plain.examples_of(i, html=False), i


@pytest.mark.parametrize("bos", [-1, 0, 5, 99])
def test_token_counts_equal_unique(bos: int) -> None:
    rng = np.random.default_rng(bos + 2)
    tokens = rng.integers(0, 40, (30, 16))
    for vocab in (40, 100):
        ids, counts = _token_counts(tokens.ravel(), bos, vocab)
        want_ids, want_counts = np.unique(tokens[tokens != bos], return_counts=True)
        assert np.array_equal(ids, want_ids) and np.array_equal(counts, want_counts)
    odd = np.array([-1, 3, 3, 200])  # outside the vocabulary: np.unique's answer still
    ids, counts = _token_counts(odd, bos, 40)
    want_ids, want_counts = np.unique(odd[odd != bos], return_counts=True)
    assert np.array_equal(ids, want_ids) and np.array_equal(counts, want_counts)


def test_fixed_digits_of_ids() -> None:
    ids = [0, 1, 63, 64, 4095, 4096, 2**24 - 1, 1_048_575, 123_456]
    one = [search.B64[i >> 18 & 63] + search.B64[i >> 12 & 63] + search.B64[i >> 6 & 63]
           + search.B64[i & 63] for i in ids]
    assert search._fixed4s(ids) == "".join(one)
    assert search._fixed4s([]) == ""


@pytest.mark.parametrize("descending", [False, True])
def test_table_sort_by_numbers_equals_the_python_sort(descending: bool) -> None:
    rng = np.random.default_rng(int(descending))
    values: list = rng.choice([0.5, -0.0, 0.0, 2.0, 1e-3, -7.25, 3], 300).tolist()
    values += [int(v) for v in rng.integers(-3, 3, 50)] + [None, ""] * 5
    valid = [i for i, v in enumerate(values) if v is not None and v != ""]

    def python_sort(vals: list) -> list[int]:
        return sorted(valid, key=lambda i: (search._sort_value(vals[i], descending), i))

    assert search._sorted_valid(values, valid, descending) == python_sort(values)
    with_nan = values[:10] + [math.nan] + values[11:]  # the Python sort, whatever it does
    assert search._sorted_valid(with_nan, valid, descending) == python_sort(with_nan)


def test_varint_runs_equal_a_code_per_run() -> None:
    rng = np.random.default_rng(4)
    values = rng.integers(0, 2**20, 300) >> rng.integers(0, 20, 300)  # small and past the table
    ends = np.sort(rng.choice(np.arange(1, 300), 40, replace=False))
    ends[-1] = 300
    starts = [0, *ends[:-1].tolist()]
    assert varint_runs(values, ends) == [varint_code(values[a:b].tolist())
                                         for a, b in zip(starts, ends.tolist(), strict=True)]
    assert varint_runs(np.zeros(0, np.int64), np.zeros(0, np.int64)) == []
    with pytest.raises(ValueError, match="negative"):
        varint_runs(np.array([3, -1]), np.array([2]))


@pytest.mark.parametrize("packed", [False, True])
def test_sequences_of_a_site_that_shows_no_example(tmp_path, packed: bool) -> None:
    """Nothing shown (no top examples, no interval samples): the symbol table alone."""
    showing = dataclasses.replace(DEFAULT_SHOWING, top=0, per_interval=0)
    writer = SiteWriter(make_store(), tmp_path, {}, True, 100, 65536, 1, showing=showing,
                        packed=packed)
    writer.write_sequences()
    assert sorted(p.name for p in (tmp_path / "seqs").iterdir()) == [
        "t.bin" if packed else "t.js"]
