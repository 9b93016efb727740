"""The prompt view: the --prompts reader, the numbers against a brute force on the tiny real model
(activations = the SAE's encode of the hook activations; Δloss = the whole model re-run with the
latent's decoder contribution removed at every non-BOS position, minus the clean loss), the store
round trip, and the pages (structure, sorting data, hostile prompts escaped)."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from generator.config import BuildConfig
from generator.errors import UserError
from generator.prompts import DEMO_PROMPTS, read_prompts, tokenize_prompts
from generator.store import read_store, write_store
from tests.fake_prompts import HOSTILE_PROMPTS, with_prompts
from tests.fake_store import EXPLANATIONS, make_store
from tests.helpers import CASES, blob_of, r3

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


@pytest.mark.parametrize("kind, hook", CASES[:2])
def test_prompt_numbers_equal_the_engines_on_the_same_tokens(model, kind, hook):
    """Corpus sequences given as prompts: every shown example's activations and Δloss (the
    engine's examples + ablation stage) are the prompt view's at the same (sequence, latent)."""
    from generator.activations import HookedSAE
    from generator.engine import Engine, EngineSettings
    from generator.models import parse_hook
    from generator.prompts import compute_prompts
    from tests.helpers import BOS, tiny_sae, tiny_tokens

    sae = tiny_sae(kind, hook)
    hooked = HookedSAE(model, sae, parse_hook(hook))
    tokens = tiny_tokens()
    engine = Engine(hooked, tokens, BOS, EngineSettings(k=3, m=2, batch_size=4, quiet=True))
    p1 = engine.pass1(np.arange(len(tokens)))
    ex = engine.examples(p1, engine.pass2(p1.max_act)).examples
    out = compute_prompts(hooked, [str(s) for s in range(len(tokens))], list(tokens),
                          np.zeros(len(tokens), bool), BOS)
    assert ex.dloss is not None and len(ex.seq) > 10
    for row in range(len(ex.seq)):
        s, i = int(ex.seq[row]), int(ex.latent[row])
        e = (out.prompt == s) & (out.latent == i)
        acts = np.zeros(tokens.shape[1], np.float32)
        acts[out.pos[e]] = out.act[e]
        np.testing.assert_allclose(acts, ex.acts[row], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.dloss[e], ex.dloss[row][out.pos[e]], rtol=1e-4,
                                   atol=1e-5)


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


# ---------------------------------------------------------------------------------------------
# pages


@pytest.fixture(scope="module")
def prompt_site(tmp_path_factory) -> Path:
    from generator.render import render_site

    out = tmp_path_factory.mktemp("prompts") / "site"
    return render_site(with_prompts(make_store()), out, EXPLANATIONS, quiet=True).out



def start_tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    from html.parser import HTMLParser

    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, attrs))

    Parser().feed(page)
    return tags



def test_a_page_per_prompt_and_an_index_linked_from_the_site_index(prompt_site):
    prompts = with_prompts(make_store()).prompts
    assert prompts is not None
    names = sorted(p.name for p in (prompt_site / "prompts").iterdir())
    assert names == sorted([f"{n}.html" for n in range(len(prompts))] + ["index.html"])
    index = (prompt_site / "index.html").read_text()
    assert 'href="prompts/index.html"' in index and "4 prompts" in index
    listing = (prompt_site / "prompts" / "index.html").read_text()
    for n in range(len(prompts)):
        assert f'href="{n}.html"' in listing
    assert "(cut)" in listing  # prompt 2 was truncated
    page = (prompt_site / "prompts" / "2.html").read_text()
    assert "cut to the build's context" in page
    assert 'href="../index.html"' in page and 'href="index.html">all prompts' in page


def test_tokens_and_blob_match_the_store(prompt_site):
    from generator.promptpages import PROMPT_TOP

    data = with_prompts(make_store())
    p = data.prompts
    assert p is not None
    for n in range(len(p)):
        page = (prompt_site / "prompts" / f"{n}.html").read_text()
        strip = re.search(r"<div id=ptoks[^>]*>(.*?)</div>", page, re.S).group(1)
        tags = re.findall(r"<i( class=bos)?>", strip)
        tokens = p.tokens[n]
        assert len(tags) == len(tokens)  # one element per position
        assert [bool(t) for t in tags] == (tokens == data.meta.bos_id).tolist()
        blob = blob_of(page)
        assert len(blob["t"]) == len(tokens) and len(blob["l"]) == len(tokens)
        assert blob["l"][-1] is None
        e = np.flatnonzero(p.prompt == n)
        for pos in range(len(tokens)):
            here = e[p.pos[e] == pos]
            want = sorted(here, key=lambda j: (-p.act[j], p.latent[j]))[:PROMPT_TOP]
            got = blob["t"][pos]
            assert [x[0] for x in got] == [int(p.latent[j]) for j in want]
            assert [x[1] for x in got] == [r3(p.act[j]) for j in want]
            assert [x[2] for x in got] == [None if np.isnan(p.dloss[j]) else r3(p.dloss[j])
                                           for j in want]
            if tokens[pos] == data.meta.bos_id:
                assert got == []
        # every named latent has a label and the corpus max; its activations are the store's
        named = {x[0] for slot in blob["t"] for x in slot}
        assert named <= {int(k) for k in blob["n"]}
        for key, values in blob["a"].items():
            j = e[p.latent[e] == int(key)]
            assert values[0::2] == p.pos[j].tolist()
            assert values[1::2] == [r3(a) for a in p.act[j]]
            assert blob["n"][key][1] == r3(data.latents.max_act[int(key)])


def test_the_latent_table_ranks_are_exact(prompt_site, tmp_path, monkeypatch):
    """With PROMPT_LIST 3: the table holds the top 3 by each order; the ranks in the blob sort
    them exactly (ties to the lower id); only the top 3 by max activation are shown."""
    from generator import promptpages
    from generator.render import render_site

    monkeypatch.setattr(promptpages, "PROMPT_VIEW", replace(promptpages.PROMPT_VIEW, k=3))
    data = with_prompts(make_store())
    p = data.prompts
    assert p is not None
    out = render_site(data, tmp_path / "site", quiet=True).out
    for n in range(len(p)):
        page = (out / "prompts" / f"{n}.html").read_text()
        blob = blob_of(page)
        rows = re.findall(r"<tr data-l=(\d+)( hidden)?>", page)
        ids = [int(r[0]) for r in rows]
        s = np.flatnonzero(p.s_prompt == n)
        keys = [p.s_max_act[s], p.s_sum_act[s], p.s_sum_abs_dloss[s]]
        want_sets = set()
        for k, key in enumerate(keys):
            order = sorted(range(len(s)), key=lambda j, key=key: (-float(key[j]), p.s_latent[s][j]))
            top = [int(p.s_latent[s][j]) for j in order]
            want_sets |= set(top[:3])
            by_rank = [i for _, i in sorted(zip([r[k] for r in blob["r"]], ids, strict=True))]
            assert by_rank[:3] == top[:3], (n, k)
            if k == 0:
                assert ids[:3] == top[:3]
                assert [bool(r[1]) for r in rows] == [False] * 3 + [True] * (len(rows) - 3)
        assert set(ids) == want_sets and blob["k"] == 3
        assert f"of the {len(s)} active on it" in page


def test_hostile_prompts_are_escaped(prompt_site):
    pages = [(prompt_site / "prompts" / f"{n}.html").read_text()
             for n in range(len(HOSTILE_PROMPTS))]
    listing = (prompt_site / "prompts" / "index.html").read_text()
    for page in [*pages, listing]:
        assert "<script>alert" not in page and "<img" not in page
        assert "\u202e" not in page and "\x00" not in page  # shown as escapes, never raw
        # the only script elements: the data blob and the two site scripts
        assert len(re.findall(r"<script", page)) == (3 if page is not listing else 1)
        tags = start_tags(page)  # what a browser's parser makes of the page
        assert not [t for t in tags if t[0] in ("img", "iframe", "object", "embed")]
        assert not [t for t in tags for name, _ in t[1] if name.startswith("on")]
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    assert "<b>\\u202e</b>evil" in listing and "<b>\\x00</b>" in listing
    # in the data blob, markup characters are escaped for a script context
    raw = re.search(r"id=fb-prompt>(.*?)</script>", pages[0], re.S).group(1)
    assert "<" not in raw and ">" not in raw and "&" not in raw
    title = re.search(r"<title>(.*?)</title>", pages[2]).group(1)
    assert html.unescape(title).startswith("Prompt 2: \\u202eevil RTL override")


def test_no_prompt_pages_without_prompts(site):
    assert not (site / "prompts").exists()
    assert "prompts/index.html" not in (site / "index.html").read_text()


def test_prompt_pages_carry_their_address_only_with_a_site_url(prompt_site, tmp_path):
    from generator.render import render_site

    page = (prompt_site / "prompts" / "1.html").read_text()
    assert "canonical" not in page and "og:url" not in page and "https://" not in page
    out = render_site(with_prompts(make_store()), tmp_path / "site", quiet=True,
                      site_url="https://u.github.io/repo").out
    for path in ("prompts/1.html", "prompts/index.html"):
        tags = start_tags((out / path).read_text())
        canonical = [dict(a)["href"] for t, a in tags if t == "link" and ("rel", "canonical") in a]
        assert canonical == [f"https://u.github.io/repo/{path}"]
