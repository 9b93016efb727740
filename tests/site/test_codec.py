"""generator.site.codec: the example codes a latent page ships (levels inside the window,
colours outside, Δloss), their round trip and the window's documented element positions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from generator.site import builder, codec, contexts
from tests.fake_store import make_store
from tests.sitefiles import Page, examples_in


def test_example_codes_carry_levels_inside_and_colours_outside_the_window(site: Path) -> None:
    data = make_store()
    pages = builder.PageBuilder(data, {})
    for i in (2, 3):
        peak = pages.max3[i]
        rows = pages.shown_rows(i).tolist()
        codes = examples_in(Page(site / "features" / f"{i}.html"))
        assert len(rows) == len(codes)
        for row, (seq, start, end, _, _, acts, colours, _) in zip(rows, codes, strict=True):
            assert seq == data.examples.seq[row]
            bos = pages.bos_mask(pages.example_tokens(row))
            want = {p: codec.act_level(float(a), peak)
                    for p, a in enumerate(np.asarray(data.examples.acts[row]).tolist())
                    if a > 0 and not bos[p]}
            assert acts == {p: v for p, v in want.items() if start <= p < end}
            assert colours == {p: codec.level(v) for p, v in want.items()
                               if not start <= p < end}


def test_example_codes_round_trip() -> None:
    acts, dl = {0: 1, 5: 1000, 16: 500, 17: 112, 127: 37}, {1: -12, 6: 600, 90: 31, 2000: -70000}
    code = codec.encode_example(123456, 3, 17, 5, 44, acts, dl)
    assert set(code) <= set(codec.B64)
    # exact levels inside the window [3, 17), colour classes outside
    assert codec.decode_example(code) == (123456, 3, 17, 5, 44, {5: 1000, 16: 500},
                                              {0: 1, 17: 2, 127: 1}, dl)
    assert [codec.varint(x) for x in (0, 31, 32, 1023)] == ["A", "f", "gB", "_f"]


def test_window_elements_match_the_documented_positions(site: Path) -> None:
    """The k-th <i> of a window that is not .bos is the k-th of sorted(acts ∪ Δloss ∪ {peak})
    in [start, end)."""
    page = Page(site / "features" / "2.html")
    for n, (_seq, start, end, peak, _cut, acts, _colours, dl) in enumerate(examples_in(page)):
        li = re.search(rf"<li id=ex-{n}>(.*?)(?=<li|</ol>)", page.raw).group(1)
        wanted = {peak, *acts, *dl}
        elements = li.count("<i") - li.count(contexts.BOS_HTML)
        assert elements == len([p for p in wanted if start <= p < end])
