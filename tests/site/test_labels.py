"""Generated explanations on the site (generator/explain/labels.py Label, hand-built here): the
latent page says which model wrote one and how it scored, the index table sorts by the scores and
filters the well-explained latents, imported explanations win, model output stays text, and the
packed viewer shows the same label."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest

from generator.explain.labels import Label
from generator.site.quality import WELL_EXPLAINED
from generator.site.render import render_site
from tests.fake_store import EXPLANATIONS, make_store
from tests.site.test_browser import open_session, search

HOSTILE = "</script><img src=x onerror=alert(1)> \u202eevil \"quoted' &amp;"
MODEL = "fake-1 <b>bold</b>"
SCORES = {  # latent -> (detection, fuzzing): 0 and 2 are imported too (EXPLANATIONS)
    0: (0.9, 0.9), 2: (0.95, 0.8), 3: (0.5, 0.75), 4: (0.8, 0.74), 6: (1.0, 0.85),
    7: (0.6, 0.55), 8: (0.77, 0.91)}


def labels() -> dict[int, Label]:
    out = {i: Label(f"generated {i}" if i != 3 else HOSTILE, MODEL,
                    {"detection": d, "fuzzing": f}, {"detection": 10, "fuzzing": 10})
           for i, (d, f) in SCORES.items()}
    out[9] = Label("unscored", MODEL)  # scoring needs non-activating examples: none here
    return out


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from generator.site.serve import make_server

    root = tmp_path_factory.mktemp("labelled")
    data = make_store()
    render_site(data, root / "pages", EXPLANATIONS, quiet=True, labels=labels())
    render_site(data, root / "packed", EXPLANATIONS, quiet=True, labels=labels(), packed=True)
    server = make_server(root, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"root": root, "url": f"http://127.0.0.1:{server.server_address[1]}"}
    server.shutdown()
    server.server_close()


def label_line(html: str) -> str | None:
    found = re.search(r'<p class="note lbl" id=label>(.*?)</p>', html)
    return found.group(1) if found else None


def test_the_page_says_who_wrote_the_explanation_and_how_it_scored(sites: dict) -> None:
    page = (sites["root"] / "pages/features/6.html").read_text()
    assert "<p class=expl>generated 6</p>" in page
    line = label_line(page)
    assert line is not None and re.sub(r"<[^>]+>", "", line) == (
        "Explanation written by fake-1 &lt;b&gt;bold&lt;/b&gt; · detection 1.00 · fuzzing 0.85")
    assert 'title="Balanced accuracy of delphi&#39;s detection scorer on 10 held-out' in line
    imported = (sites["root"] / "pages/features/0.html").read_text()  # --explanations wins
    assert f"<p class=expl>{EXPLANATIONS[0]}</p>" in imported and label_line(imported) is None
    unscored = (sites["root"] / "pages/features/9.html").read_text()
    assert re.sub(r"<[^>]+>", "", label_line(unscored) or "") == \
        "Explanation written by fake-1 &lt;b&gt;bold&lt;/b&gt;"


def test_model_output_stays_text(sites: dict) -> None:
    page = (sites["root"] / "pages/features/3.html").read_text()
    assert "<img src=x" not in page
    assert ("<p class=expl>&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; \u202eevil "
            "&#34;quoted&#39; &amp;amp;</p>") in page
    assert "onerror=alert(1)>" not in page


def test_the_index_sorts_by_score_and_flags_the_well_explained(sites: dict) -> None:
    index = (sites["root"] / "pages/index.html").read_text()
    assert '<button type=button data-sort=sd>detection</button>' in index
    assert '<button type=button data-sort=sf>fuzzing</button>' in index
    assert f"<select data-flag={WELL_EXPLAINED}>" in index and "> well explained</label>" in index


@pytest.mark.browser
def test_in_the_browser_sorted_filtered_and_the_same_in_the_viewer(browser: object,
                                                                   sites: dict) -> None:
    shown = {i: s for i, s in SCORES.items() if i not in EXPLANATIONS}  # imported ones win
    with open_session(browser, sites["url"] + "/pages/") as s:
        dialogs: list[str] = []
        s.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page = s.open("index.html")
        page.click("[data-sort=sd]")
        page.wait_for_function("document.querySelector('#lt th button[data-sort=sd]')"
                               ".parentNode.getAttribute('aria-sort') === 'descending'")
        order = sorted(shown, key=lambda i: (-shown[i][0], i))
        page.wait_for_function(f"document.querySelector('#lt tbody td a').textContent === "
                               f"'{order[0]}'")
        ids = page.eval_on_selector_all("#lt tbody tr td:first-child a",
                                        "as => as.map(a => +a.textContent)")
        assert ids[:len(order)] == order
        cells = page.eval_on_selector_all(
            "#lt tbody tr", "trs => trs.map(tr => tr.children[5].textContent)")
        assert cells[:len(order)] == [f"{shown[i][0]:.2f}" for i in order]
        page.select_option(f"select[data-flag='{WELL_EXPLAINED}']", "only")
        good = [i for i in order if min(shown[i]) >= 0.75]
        page.wait_for_function(f"document.querySelectorAll('#lt tbody tr').length === {len(good)}")
        assert page.eval_on_selector_all("#lt tbody tr td:first-child a",
                                         "as => as.map(a => +a.textContent)") == good
        texts = {}
        for i in (6, 3, 9):
            page = s.open(f"features/{i}.html")
            texts[i] = (page.text_content(".expl"), page.text_content("#label"))
        assert texts[3][0] == HOSTILE and not dialogs
        found = search(s, "generated")  # the search finds words of generated labels
        assert {f"#{i}" for i in shown if i != 3} <= set(found)
    with open_session(browser, sites["url"] + "/packed/") as s:
        for i in (6, 3, 9):
            page = s.open(f"latent.html#{i}")
            page.wait_for_function(f"window.fbShown === {i}")
            assert (page.text_content(".expl"), page.text_content("#label")) == texts[i]
            assert page.locator("article img[src=x]").count() == 0
        assert not dialogs
