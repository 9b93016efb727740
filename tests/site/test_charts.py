"""generator.site.charts: interval colours distinct for any number of intervals."""

from __future__ import annotations

import re
from pathlib import Path

from generator.site import assets
from generator.site.charts import (
    LEVEL_ALPHAS,
    LEVELS,
    interval_alphas,
)
from tests.sitefiles import Page


def test_interval_colours_are_distinct(scaled_sites: dict[str, Path]) -> None:
    """Every interval has its own colour, on its bars and on its heading (with 10 intervals, the
    nine activation colours alone gave intervals 9 and 10 the same)."""
    page = Page(scaled_sites["default"] / "features" / "0.html")
    headings = {int(a["id"][4:]): a["style"] for _, a in page.tags
                if a.get("id", "").startswith("int-")}
    assert sorted(headings) == list(range(10))
    assert len(set(headings.values())) == 10, headings
    chart = re.search(r"<section id=acts>(.*?)</section>", page.raw, re.S).group(1)
    bars = re.findall(r"<path class=ai style=(--o:[.\d]+) d=", chart)
    # 50 bins over 10 intervals: one run of bars per interval, lowest first, in its colour
    assert bars == [headings[j] for j in range(10)]
    opacities = [float(headings[j].split(":")[1]) for j in range(10)]
    assert opacities == sorted(opacities)


def test_interval_colours_are_distinct_for_any_number_of_intervals() -> None:
    """Intervals get interpolated shades of the activation colour: distinct and rising for
    every count (the CLI sets no maximum), nine of them exactly the token colours a1..a9."""
    css = (Path(assets.resource_dir("static")) / "style.css").read_text()
    palette = [float(v) for v in re.findall(r"--a\d: rgba\(var\(--tok\), ([.\d]+)\)", css)]
    assert palette == list(LEVEL_ALPHAS)
    assert [float(a) for a in interval_alphas(LEVELS)] == list(LEVEL_ALPHAS)
    for n in [*range(1, 260), 641, 1000, 4096]:
        alphas = interval_alphas(n)
        values = [float(a) for a in alphas]
        assert len(set(alphas)) == n, n
        assert all(a < b for a, b in zip(values, values[1:], strict=False)), n
        assert min(values) >= LEVEL_ALPHAS[0] - 1e-9 and max(values) <= LEVEL_ALPHAS[-1] + 1e-9
