"""generator.site.contexts' Showing: what the default site and `--compact` ship of each latent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from generator.site import writer
from tests.sitefiles import Page, load_script_call, shown_codes


def test_default_shows_every_top_example_and_two_samples_per_interval(
        scaled_sites: dict[str, Path]) -> None:
    site = scaled_sites["default"]
    page = Page(site / "features" / "0.html")
    top = re.search(r"<section id=top>(.*?)</section>", page.raw, re.S).group(1)
    intervals = re.search(r"<section id=intervals>(.*?)</section>", page.raw, re.S).group(1)
    assert top.count("<li id=ex-") == 20
    per_group = [g.count("<li id=ex-") for g in intervals.split("<h3 ")[1:]]
    assert max(per_group) == 2 and "2 of the 5 samples drawn per interval shown" in intervals
    assert len(shown_codes(site, 0)) == top.count("<li") + intervals.count("<li")
    assert (site / "embed" / "0.html").is_file()
    assert len(page.find("svg")) == 2


def test_compact_ships_what_it_says(scaled_sites: dict[str, Path]) -> None:
    site = scaled_sites["compact"]
    assert not (site / "embed").exists()
    page = Page(site / "features" / "0.html")
    top = re.search(r"<section id=top>(.*?)</section>", page.raw, re.S).group(1)
    intervals = re.search(r"<section id=intervals>(.*?)</section>", page.raw, re.S).group(1)
    assert top.count("<li id=ex-") == 10 and "The top 10 of 20." in top
    assert max(g.count("<li id=ex-") for g in intervals.split("<h3 ")[1:]) == 1
    assert page.find("article")[0]["data-embed"] == "0.html?embed"
    assert len(page.find("svg")) == 1  # no logit histogram
    logits = re.search(r"<section id=logits>(.*?)</section>", page.raw, re.S).group(1)
    assert logits.count("<tr>") == 10  # 5 promoted + 5 suppressed
    for n, (_, start, end, peak, _, _, _, dl) in enumerate(shown_codes(site, 0)):
        before, after = (6, 2) if n < 10 else (4, 1)  # top examples first, then samples
        assert (start, end) == (max(0, peak - before), min(128, peak + after + 1))
        assert sum(1 for p in dl if not start <= p < end) <= 4
    default = Page(scaled_sites["default"] / "features" / "0.html")
    assert len(page.raw) < 0.7 * len(default.raw)


@pytest.mark.parametrize("mode", ["default", "compact"])
def test_sequence_files_hold_exactly_the_shown_examples_sequences(
        scaled_sites: dict[str, Path], mode: str) -> None:
    site = scaled_sites[mode]
    shipped: set[int] = set()
    for path in (site / "seqs").glob("*.js"):
        if path.name != "t.js":
            k, seqs = load_script_call(path, "fbSeqs")
            assert all(int(s) // writer.SEQ_SHARD == k for s in seqs)
            shipped |= {int(s) for s in seqs}
    shown = {code[0] for i in range(8) for code in shown_codes(site, i)}
    assert shipped == shown
