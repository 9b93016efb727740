"""The prompt view: the --prompts reader, the numbers against a brute force on the tiny real model
(activations = the SAE's encode of the hook activations; Δloss = the whole model re-run with the
latent's decoder contribution removed at every non-BOS position, minus the clean loss), the store
round trip, and the pages (structure, sorting data, hostile prompts escaped)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from generator.config import BuildConfig
from generator.errors import UserError
from generator.prompts import DEMO_PROMPTS, read_prompts, tokenize_prompts
from generator.store import read_store, write_store
from tests.fake_store import make_store

# ---------------------------------------------------------------------------------------------
# reading


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
    ("p.jsonl", b'{"prompt": "x"}\n', "p.jsonl:1 has no string field 'text' (has prompt)"),
    ("p.jsonl", b'["x"]\n', "has no string field 'text'"),
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


# ---------------------------------------------------------------------------------------------
# numbers: the tiny real model against a brute force

CASES = [("standard", "blocks.1.hook_resid_pre"), ("topk", "blocks.0.hook_attn_out"),
         ("jumprelu", "blocks.1.hook_mlp_out"), ("gated", "blocks.0.mlp.hook_post"),
         ("standard", "blocks.1.attn.hook_z")]


def tiny_prompts() -> list[np.ndarray]:
    """BOS-led prompts of several lengths (up to the tiny model's 16), one with a BOS inside
    (a text holding the separator), one of a single token after BOS."""
    from tests.helpers import BOS

    rng = np.random.default_rng(3)
    prompts = [rng.integers(1, 50, size=n).astype(np.int32) for n in (15, 7, 11, 1)]
    prompts[2][5] = BOS
    return [np.concatenate([[BOS], p]).astype(np.int32) for p in prompts]


def brute_force(model, sae, hook: str, toks: np.ndarray):
    """Per position, every latent's activation; per active latent, Δloss at every position;
    the clean loss. Literally: encode the cached hook activation, and re-run the whole model with
    h - a[t, i] W_dec[i] at every position (a is 0 at BOS)."""
    import torch

    from tests.helpers import BOS

    t = torch.from_numpy(toks[None]).long()
    with torch.no_grad():
        _, cache = model.run_with_cache(t, names_filter=hook)
        acts = sae.encode(cache[hook][0]).float()
        acts[torch.from_numpy(toks == BOS)] = 0
        clean = model(t, return_type="loss", loss_per_token=True)[0]
        dloss = {}
        for i in torch.nonzero(acts.amax(0) > 0)[:, 0].tolist():
            delta = acts[:, i, None] * sae.W_dec[i].detach()[None, :]

            def ablate(value, hook, delta=delta):
                return value - delta.reshape(value.shape[1:]).to(value.dtype)

            ablated = model.run_with_hooks(t, return_type="loss", loss_per_token=True,
                                           fwd_hooks=[(hook, ablate)])[0]
            dloss[i] = (ablated - clean).numpy()
    return acts.numpy(), dloss, clean.numpy()


@pytest.fixture(scope="module")
def model():
    from tests.helpers import tiny_model

    return tiny_model()


def compute(model, kind, hook, **kw):
    from generator.activations import HookedSAE
    from generator.models import parse_hook
    from generator.prompts import compute_prompts
    from tests.helpers import BOS, tiny_sae

    sae = tiny_sae(kind, hook)
    toks = tiny_prompts()
    texts = [f"prompt {n}" for n in range(len(toks))]
    out = compute_prompts(HookedSAE(model, sae, parse_hook(hook)), texts, toks,
                          np.zeros(len(toks), bool), BOS, **kw)
    return sae, toks, out


@pytest.mark.parametrize("kind, hook", CASES)
def test_prompt_numbers_equal_brute_force(model, kind, hook):
    from tests.helpers import BOS

    sae, toks, out = compute(model, kind, hook)
    assert len(out) == len(toks)
    n_checked = 0
    for n, tk in enumerate(toks):
        acts, dloss, clean = brute_force(model, sae, hook, tk)
        ok = tk[1:] != BOS  # predictions whose target is not BOS
        # the clean loss
        np.testing.assert_allclose(out.loss[n][:-1][ok], clean[ok], rtol=1e-4, atol=1e-5)
        assert np.isnan(out.loss[n][-1]) and np.isnan(out.loss[n][:-1][~ok]).all()
        # every active entry, in (position, latent) order, with its activation and Δloss
        e = out.prompt == n
        pos, lat = np.nonzero(acts > 0)
        assert out.pos[e].tolist() == pos.tolist() and out.latent[e].tolist() == lat.tolist()
        np.testing.assert_allclose(out.act[e], acts[pos, lat], rtol=1e-5, atol=1e-6)
        want = np.array([np.append(dloss[i], np.nan)[p] if p + 1 < len(tk) and tk[p + 1] != BOS
                         else np.nan for p, i in zip(pos, lat, strict=True)])
        np.testing.assert_allclose(out.dloss[e], want, rtol=1e-4, atol=1e-5)  # NaN at NaN
        # per latent over the prompt
        s = out.s_prompt == n
        ids = sorted(dloss)
        assert out.s_latent[s].tolist() == ids
        assert out.s_n_active[s].tolist() == [int((acts[:, i] > 0).sum()) for i in ids]
        np.testing.assert_allclose(out.s_max_act[s], [acts[:, i].max() for i in ids], rtol=1e-5)
        np.testing.assert_allclose(out.s_sum_act[s], [acts[:, i].sum() for i in ids], rtol=1e-5)
        np.testing.assert_allclose(out.s_sum_abs_dloss[s],
                                   [np.abs(dloss[i][ok]).sum() for i in ids],
                                   rtol=1e-4, atol=1e-5)
        n_checked += len(ids)
    assert n_checked > 20  # the case exercises real ablations
    assert np.isfinite(out.dloss).sum() > 20


def test_prompt_numbers_do_not_depend_on_chunking(model):
    _, _, a = compute(model, "standard", "blocks.1.hook_resid_pre")
    _, _, b = compute(model, "standard", "blocks.1.hook_resid_pre", encode_rows=3, chunk=2)
    for name in ("pos", "latent", "s_latent", "s_n_active"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist()
    for name in ("act", "dloss", "s_max_act", "s_sum_act", "s_sum_abs_dloss"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6)


def test_store_round_trip(model, tmp_path):
    _, _, prompts = compute(model, "topk", "blocks.0.hook_attn_out")
    data = replace(make_store(), prompts=prompts)
    write_store(data, tmp_path / "store")
    back = read_store(tmp_path / "store").prompts
    assert back is not None and back.text == prompts.text
    for name in ("tokens", "loss"):
        for x, y in zip(getattr(back, name), getattr(prompts, name), strict=True):
            np.testing.assert_array_equal(x, y)
    for name in ("truncated", "prompt", "pos", "latent", "act", "dloss", "s_prompt", "s_latent",
                 "s_n_active", "s_max_act", "s_sum_act", "s_sum_abs_dloss"):
        got, want = getattr(back, name), getattr(prompts, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want)
    # a store without prompts has none of the files
    write_store(make_store(), tmp_path / "plain")
    assert read_store(tmp_path / "plain").prompts is None
    assert not list((tmp_path / "plain").glob("prompt*"))
