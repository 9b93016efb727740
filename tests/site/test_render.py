"""generator.site.render: the site's layout, links that stay inside it, determinism, atomicity,
purity (no torch), the size budget and the over-the-limit advice. No browser here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from generator.errors import UserError
from generator.site import builder
from generator.site import render as render_mod
from generator.site.render import render_site
from tests.fake_store import EXPLANATIONS, make_scaled_store, make_store
from tests.sitefiles import D_SAE, Page, html_files


def test_layout(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / ".nojekyll").is_file()
    for i in range(D_SAE):
        assert (site / "features" / f"{i}.html").is_file()
        assert (site / "embed" / f"{i}.html").is_file()
    assert (site / "search" / "id" / "0.js").is_file()
    assert list((site / "search").glob("s*.js"))
    assert list((site / "seqs").glob("*.js"))


def test_report(site_report: render_mod.RenderReport) -> None:
    assert site_report.latents == D_SAE
    assert site_report.pages == 2 * D_SAE + 1
    assert site_report.total_bytes == sum(site_report.bytes_by_part.values())
    assert site_report.total_bytes == sum(p.stat().st_size for p in site_report.out.rglob("*")
                                          if p.is_file())


@pytest.mark.parametrize("which", ["site", "bare_site"])
def test_every_link_is_relative_and_resolves(which: str, request: pytest.FixtureRequest) -> None:
    site: Path = request.getfixturevalue(which)
    for path in html_files(site):
        page = Page(path)
        for url in page.urls():
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{path}: absolute URL {url}"
            assert not url.startswith("/"), f"{path}: root-relative URL {url}"
            if not parts.path:
                assert parts.fragment in page.ids(), f"{path}: dangling anchor {url}"
                continue
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{path}: {url} does not resolve"
            assert site.resolve() in target.parents, f"{path}: {url} leaves the site"


def test_no_network_resources_anywhere(site: Path) -> None:
    for path in site.rglob("*"):
        if path.suffix in {".html", ".js", ".css"}:
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"(src|href)=\"?https?://", text), path
            assert "import(" not in text, path
            # one fetch, of the packed site's shards, relative to the site root (util.js)
            fetches = re.findall(r"fetch\((.*?)\)", text)
            assert fetches == (["root + path"] if path.name.startswith("util.") else []), path
            assert "@import" not in text and "url(http" not in text, path


def test_rerender_is_byte_identical(tmp_path: Path) -> None:
    data = make_store()
    a = render_site(data, tmp_path / "a", EXPLANATIONS, quiet=True).out
    b = render_site(make_store(), tmp_path / "b", EXPLANATIONS, quiet=True).out
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_failure_mid_render_leaves_old_site_intact(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "site"
    render_site(make_store(), out, quiet=True)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = {"n": 0}
    original = builder.PageBuilder.latent_page

    def explode(self: object, i: int) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return original(self, i)

    monkeypatch.setattr(builder.PageBuilder, "latent_page", explode)
    with pytest.raises(RuntimeError, match="boom"):
        render_site(make_store(), out, EXPLANATIONS, quiet=True)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temp folder left behind


def test_refuses_to_replace_a_folder_that_is_not_a_site(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="not a feature-browser site"):
        render_site(make_store(), tmp_path, quiet=True)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_render_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from tests.fake_store import make_store\n"
        "from generator.site.render import render_site\n"
        f"render_site(make_store(), __import__('pathlib').Path({str(tmp_path / 's')!r}), "
        "quiet=True, site_url='https://example.org/sae/')\n"  # link cards drawn too
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'sae_lens', 'transformer_lens')]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_explanations_for_unknown_latents_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="latent 99"):
        render_site(make_store(), tmp_path / "s", {99: "x"}, quiet=True)


def test_size_budget_at_default_settings(tmp_path: Path) -> None:
    data = make_scaled_store(d_sae=24, n_seqs=1000)
    assert data.meta.settings["k"] == 20 and data.meta.ctx == 128
    report = render_site(data, tmp_path / "s", {i: f"explanation {i}" for i in range(24)},
                         quiet=True)
    parts = report.bytes_by_part
    # the token index grows with the vocabulary, not with the latents
    token_files = list((report.out / "search").glob("t[0-9]*.js"))
    token_bytes = sum(f.stat().st_size for f in token_files)
    assert data.token_latents is not None and token_bytes > 0
    per_latent = (parts["features"] + parts["embed"] + parts["search"] - token_bytes) / report.latents
    # (the real demo store, 20 top + 10 x 5 interval samples with Δloss: ~27 KB a latent in all)
    assert per_latent < 24_000, parts
    seq_bytes_per_seq = parts["seqs"] / len(data.seq_ids)
    per_token = token_bytes / len(data.token_latents.token)
    assert per_token < 400, per_token  # 16 latents with mean and count, and the key
    # 24,576 latents over a 24,576 x 128 corpus with GPT-2's 50,257 tokens: pages + embed +
    # search + every sequence + a token index over the whole vocabulary
    projected = 24_576 * per_latent + 24_576 * seq_bytes_per_seq + 50_257 * per_token
    assert projected < 650e6, projected


def test_examples_sorted_differently_in_the_store_render_the_same(tmp_path: Path) -> None:
    data = make_store()
    order = np.random.default_rng(0).permutation(len(data.examples.seq))
    ex = data.examples
    shuffled = type(ex)(latent=ex.latent[order], kind=[ex.kind[k] for k in order],
                        interval=ex.interval[order], rank=ex.rank[order], seq=ex.seq[order],
                        acts=ex.acts[order], dloss=ex.dloss[order])
    a = render_site(data, tmp_path / "a", quiet=True).out
    b = render_site(type(data)(meta=data.meta, latents=data.latents, examples=shuffled,
                               seq_ids=data.seq_ids, seq_tokens=data.seq_tokens,
                               vocab=data.vocab), tmp_path / "b", quiet=True).out
    assert (a / "features" / "2.html").read_bytes() == (b / "features" / "2.html").read_bytes()


def test_a_site_over_the_pages_limit_says_what_to_drop(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Over GitHub Pages' limit (here lowered to 100 KB), the render warns in one line with the
    largest parts and the options that apply to this site; under it, nothing is said."""
    import logging

    from tests.fake_corpus import with_corpus

    data = with_corpus(make_store())
    caplog.set_level(logging.WARNING, logger="generator.site.render")
    render_site(data, tmp_path / "under", quiet=True)
    assert not caplog.records
    monkeypatch.setattr(render_mod, "PAGES_LIMIT", 100_000)
    report = render_site(data, tmp_path / "over", quiet=True, site_url="https://u.github.io/r/",
                         packed=False)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "over GitHub Pages' 1 GB limit" in line
    assert f"{report.total_bytes / 1e9:.2f} GB" in line
    biggest = max(report.bytes_by_part, key=lambda k: report.bytes_by_part[k])
    assert f"largest: {biggest}/" in line
    for fix in ("--no-corpus-view drops corpus/", "leaving out --site-url drops cards/",
                "--compact ships less", "--packed writes one viewer page"):
        assert fix in line
    caplog.clear()
    render_site(data, tmp_path / "compact", quiet=True, compact=True, packed=False)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "--no-corpus-view" not in line and "--compact" not in line and "cards/" not in line
    assert "--packed writes one viewer page" in line
    caplog.clear()
    render_site(data, tmp_path / "packed", quiet=True, packed=True)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "--packed" not in line and "--compact ships ~40% less a latent" in line
    assert f"fits up to ~{100_000 // render_mod.PACKED_COMPACT_BYTES:,} latents" in line
    caplog.clear()
    render_site(data, tmp_path / "packed-compact", quiet=True, packed=True, compact=True)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "--compact" not in line and "host it elsewhere" in line
