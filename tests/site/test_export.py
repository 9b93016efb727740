"""`feature-browser export --format neuronpedia`: the batches match SAEDashboard's Neuronpedia
layout field for field, carry the store's numbers, stream the store, and bad inputs are one line
with nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import orjson
import pytest

from generator.cli import main
from generator.files.manifest import MANIFEST
from generator.files.outputs import EXPORT_MARKER
from generator.site import export as export_mod
from generator.site.export import RUN_SETTINGS, export_store
from generator.store.io import read_store, write_store
from generator.store.schema import EXAMPLE_INTERVAL, EXAMPLE_TOP, StoreData
from tests.fake_store import HOSTILE_VOCAB, make_store

# The required fields, from jbloomAus/SAEDashboard sae_dashboard/neuronpedia/neuronpedia_dashboard.py:
# NeuronpediaDashboardBatch.to_dict(), NeuronpediaDashboardFeature.to_dict() and
# NeuronpediaDashboardActivation.to_dict() (whose dfa_values / dfa_maxValue / dfa_targetIndex are
# written only when SAEDashboard ran DFA, which a store never has). Neuronpedia's importer
# (neuronpedia-utils convert-saedashboard-to-neuronpedia-export.py) reads each of these keys.
BATCH_FIELDS = {"model_id", "layer", "sae_set", "sae_id_suffix", "features"}
FEATURE_FIELDS = {
    "feature_index",
    "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
    "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
    "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson",
    "neg_str", "neg_values", "pos_str", "pos_values",
    "frac_nonzero",
    "freq_hist_data_bar_values", "freq_hist_data_bar_heights",
    "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
    "n_prompts_total", "n_tokens_in_prompt", "dataset",
    "decoder_weights_dist", "activations", "vector",
}
ACTIVATION_FIELDS = {"bin_min", "bin_max", "bin_contains", "tokens", "values",
                     "qualifying_token_index"}
EMPTY_FIELDS = {  # what a store does not hold (see generator/site/export.py _feature)
    "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
    "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
    "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson",
    "decoder_weights_dist", "vector",
}
DEAD = 11
"""make_store()'s dead latent."""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "store"
    write_store(make_store(), path)
    return path


@pytest.fixture(scope="module")
def data(store: Path) -> StoreData:
    return read_store(store)


@pytest.fixture(scope="module")
def exported(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "np"
    export_store("neuronpedia", store, out, batch_size=5)
    return out


def _batches(out: Path) -> list[dict]:
    names = sorted((p.name for p in out.glob("batch-*.json")), key=lambda n: int(n[6:-5]))
    assert names == [f"batch-{i}.json" for i in range(len(names))]
    return [orjson.loads((out / name).read_bytes()) for name in names]


def _features(out: Path) -> list[dict]:
    return [f for batch in _batches(out) for f in batch["features"]]


def _f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_batch_files_parse_and_fields_match_saedashboard(exported: Path, data: StoreData) -> None:
    batches = _batches(exported)
    assert len(batches) == 3  # 12 latents, 5 per file
    for number, batch in enumerate(batches):
        assert set(batch) == BATCH_FIELDS
        assert [f["feature_index"] for f in batch["features"]] == list(
            range(5 * number, min(5 * number + 5, data.meta.d_sae)))
        for feature in batch["features"]:
            assert set(feature) == FEATURE_FIELDS
            for activation in feature["activations"]:
                assert set(activation) == ACTIVATION_FIELDS
    assert [f["feature_index"] for f in _features(exported)] == list(range(data.meta.d_sae))
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        [EXPORT_MARKER, MANIFEST, RUN_SETTINGS, "batch-0.json", "batch-1.json", "batch-2.json"])


def test_json_has_sorted_keys(exported: Path) -> None:
    for path in exported.glob("*.json"):
        raw = path.read_bytes()
        assert raw == orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS | (
            orjson.OPT_INDENT_2 if path.name == RUN_SETTINGS else 0))


def test_batch_header_and_run_settings(exported: Path, data: StoreData) -> None:
    meta = data.meta
    for batch in _batches(exported):
        assert (batch["model_id"], batch["layer"], batch["sae_set"], batch["sae_id_suffix"]) == (
            meta.model, 0, meta.sae, None)  # hook blocks.0.hook_resid_post
    settings = orjson.loads((exported / RUN_SETTINGS).read_bytes())
    assert settings["n_features_at_a_time"] == 5 and settings["n_batches"] == 3
    assert settings["d_sae"] == meta.d_sae and settings["hook_name"] == meta.hook
    assert settings["store_meta"]["created"] == meta.created


def test_feature_values_equal_the_store(exported: Path, data: StoreData) -> None:
    lat, meta = data.latents, data.meta
    vocab = [p.decode("utf-8", "replace") for p in data.vocab]
    for i, feature in enumerate(_features(exported)):
        assert feature["frac_nonzero"] == lat.n_active[i] / meta.n_tokens
        assert feature["pos_str"] == [vocab[t] for t in lat.logit_pos_ids[i]]
        np.testing.assert_array_equal(_f32(feature["pos_values"]), _f32(lat.logit_pos_vals[i]))
        assert feature["neg_str"] == [vocab[t] for t in lat.logit_neg_ids[i]]
        np.testing.assert_array_equal(_f32(feature["neg_values"]), _f32(lat.logit_neg_vals[i]))
        assert list(feature["pos_values"]) == sorted(feature["pos_values"], reverse=True)
        assert feature["logits_hist_data_bar_heights"] == lat.logit_hist[i].tolist()
        n = lat.logit_hist.shape[1]
        width = (lat.logit_hi[i] - lat.logit_lo[i]) / n
        np.testing.assert_allclose(feature["logits_hist_data_bar_values"],
                                   lat.logit_lo[i] + (np.arange(n) + 0.5) * width, rtol=1e-5)
        assert (feature["n_prompts_total"], feature["n_tokens_in_prompt"], feature["dataset"]) == (
            meta.n_seqs, meta.ctx, meta.corpus)
        assert all(feature[name] == [] for name in EMPTY_FIELDS)
        if i == DEAD:
            assert feature["frac_nonzero"] == 0 and feature["activations"] == []
            assert feature["freq_hist_data_bar_heights"] == []
            assert feature["freq_hist_data_bar_values"] == []
            continue
        assert feature["freq_hist_data_bar_heights"] == lat.hist[i].tolist()
        n = lat.hist.shape[1]
        np.testing.assert_allclose(feature["freq_hist_data_bar_values"],
                                   (np.arange(n) + 0.5) * lat.max_act[i] / n, rtol=1e-6)


def test_activations_equal_the_stored_examples(exported: Path, data: StoreData) -> None:
    ex, lat = data.examples, data.latents
    n_intervals = lat.interval_counts.shape[1]
    for i, feature in enumerate(_features(exported)):
        rows = np.flatnonzero(ex.latent == i)
        # SAEDashboard's order: the top group by rank, then intervals from the highest down
        tops = [r for r in rows if ex.kind[r] == EXAMPLE_TOP]
        samples = sorted((r for r in rows if ex.kind[r] == EXAMPLE_INTERVAL),
                         key=lambda r: (-ex.interval[r], ex.rank[r]))
        expected = sorted(tops, key=lambda r: ex.rank[r]) + samples
        assert len(feature["activations"]) == len(expected) == len(rows)
        max_act = np.float32(lat.max_act[i])
        for activation, r in zip(feature["activations"], expected, strict=True):
            np.testing.assert_array_equal(_f32(activation["values"]), ex.acts[r])
            assert activation["qualifying_token_index"] == int(np.argmax(ex.acts[r]))
            assert len(activation["tokens"]) == data.meta.ctx
            if ex.kind[r] == EXAMPLE_TOP:
                assert (activation["bin_min"], activation["bin_contains"]) == (-1, -1)
                assert np.float32(activation["bin_max"]) == max_act
            else:
                j = int(ex.interval[r])
                assert np.float32(activation["bin_min"]) == np.float32(j * lat.max_act[i] / n_intervals)
                assert np.float32(activation["bin_max"]) == np.float32(
                    (j + 1) * lat.max_act[i] / n_intervals)
                assert activation["bin_contains"] == lat.interval_counts[i, j] / data.meta.n_seqs
                assert activation["bin_min"] < max(activation["values"]) <= activation["bin_max"]


def test_tokens_are_kept_as_data(exported: Path, data: StoreData) -> None:
    """Hostile tokens arrive verbatim (no HTML escaping); whole tokens decode alone; a character
    split over two byte-level pieces goes to the first; a byte that never completes is U+FFFD."""
    seen: set[str] = set()
    split_euro = False
    for feature in _features(exported):
        for activation in feature["activations"]:
            tokens = activation["tokens"]
            seen.update(tokens)
            split_euro |= any(a == "€" and b == "" for a, b in zip(tokens, tokens[1:], strict=False))
    for hostile in ("</script>", "<img src=x onerror=alert(1)>", "\"quoted' &amp;", "\u202eevil",
                    "\x00", "😀", "\n", "\t"):
        assert hostile in seen
    assert split_euro and "\ufffd" in seen
    assert not any("&lt;" in t for t in seen)
    for feature in _features(exported):  # every other token is a whole vocabulary piece
        for activation in feature["activations"]:
            for text in activation["tokens"]:
                if "\ufffd" in text or text in ("€", ""):
                    continue
                assert text.encode() in HOSTILE_VOCAB


def test_streamed_in_small_reads_gives_the_same_bytes(store: Path, exported: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is never read whole: reads of 3 example rows at a time (every latent's examples
    cut across reads) give byte-identical batches."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("export must stream the store, not read_store() it")

    whole = export_mod.read_table

    def small_tables_only(store: Path, name: str) -> object:
        assert name not in ("latents.parquet", "examples.parquet"), f"export read {name} whole"
        return whole(store, name)

    monkeypatch.setattr("generator.store.io.read_store", refuse)
    assert not hasattr(export_mod, "read_store")  # the patch above is the only way in
    monkeypatch.setattr(export_mod, "read_table", small_tables_only)
    monkeypatch.setattr(export_mod, "READ_ROWS", 3)
    out = tmp_path / "np"
    export_store("neuronpedia", store, out, batch_size=5)
    for name in ("batch-0.json", "batch-1.json", "batch-2.json"):
        assert (out / name).read_bytes() == (exported / name).read_bytes()


def test_feature_count_equals_d_sae_for_any_batch_size(store: Path, tmp_path: Path,
                                                       data: StoreData) -> None:
    for size in (1, 7, 12, 128):
        out = tmp_path / f"np{size}"
        report = export_store("neuronpedia", store, out, batch_size=size)
        batches = _batches(out)
        assert len(batches) == report.n_batches == -(-data.meta.d_sae // size)
        assert all(len(b["features"]) <= size for b in batches)
        assert [f["feature_index"] for f in _features(out)] == list(range(data.meta.d_sae))


def test_cli_export_and_re_export_replaces_the_previous_one(store: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--format", "neuronpedia", "--store", str(store), "--out", "np",
                 "--batch-size", "4"]) == 0
    assert len(list((tmp_path / "np").glob("batch-*.json"))) == 3
    assert main(["export", "--store", str(store), "--out", "np"]) == 0  # default: 128 per file
    assert sorted(p.name for p in (tmp_path / "np").iterdir()) == sorted(
        [EXPORT_MARKER, MANIFEST, RUN_SETTINGS, "batch-0.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["np"]  # no temp folders left


def _bad(tmp_path: Path, store: Path, case: str) -> list[str]:
    if case == "unknown format":
        return ["--format", "saedashboard-html", "--store", str(store), "--out", "np"]
    if case == "missing store":
        return ["--store", str(tmp_path / "nowhere"), "--out", "np"]
    if case == "folder that is no store":
        (tmp_path / "empty").mkdir()
        return ["--store", str(tmp_path / "empty"), "--out", "np"]
    if case == "out is a folder of the user's":
        (tmp_path / "np").mkdir()
        (tmp_path / "np" / "thesis.tex").write_text("keep me")
        return ["--store", str(store), "--out", "np"]
    if case == "out is a file":
        (tmp_path / "np").write_text("keep me")
        return ["--store", str(store), "--out", "np"]
    if case == "out is the store":
        return ["--store", str(store), "--out", str(store)]
    if case == "out inside the store":
        return ["--store", str(store), "--out", str(store / "np")]
    if case == "batch size 0":
        return ["--store", str(store), "--out", "np", "--batch-size", "0"]
    raise AssertionError(case)


BAD_CASES = ["unknown format", "missing store", "folder that is no store",
             "out is a folder of the user's", "out is a file", "out is the store",
             "out inside the store", "batch size 0"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_and_writes_nothing(case: str, store: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = _bad(work, store, case)
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    store_before = sorted((p.name, p.stat().st_mtime_ns) for p in store.iterdir())
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("feature-browser: error: "), err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == before
    assert not (work / "np").is_dir() or any((work / "np").iterdir())  # the user's folder stays
    assert not [p for p in os.listdir(work) if ".tmp-" in p]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in store.iterdir()) == store_before


def test_unknown_format_names_the_supported_ones(store: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--format", "html", "--store", str(store), "--out",
                 str(tmp_path / "np")]) == 2
    assert "--format neuronpedia" in capsys.readouterr().err


def test_failure_midway_keeps_the_previous_export(store: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "np"
    export_store("neuronpedia", store, out, batch_size=4)
    previous = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    real = export_mod._features

    def fail_on_second(*args: object, **kwargs: object) -> list:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(export_mod, "_features", fail_on_second)
    with pytest.raises(export_mod.UserError, match="No space left on device"):
        export_store("neuronpedia", store, out, batch_size=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["np"]


def test_damaged_store_is_one_line(store: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    damaged = tmp_path / "store"
    damaged.mkdir()
    for p in store.iterdir():
        (damaged / p.name).write_bytes(p.read_bytes())
    raw = (damaged / "examples.parquet").read_bytes()
    (damaged / "examples.parquet").write_bytes(raw[: len(raw) // 2])
    assert main(["export", "--store", str(damaged), "--out", str(tmp_path / "np")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged" in err and "examples.parquet" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
