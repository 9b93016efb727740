"""How the index's latent map (static/map.js) copes with real widths in Chromium: the fake
store's site with its map/points.js replaced by N synthetic latents (clusters of points, three
colourings), so the page's own code decodes, indexes and draws them.

    .venv/bin/python bench/map_canvas.py                 # 16,384 / 65,536 / 131,072 latents

Prints per size: the data file's bytes, the time from scrolling to the map until it is drawn
(loading, decoding, the grid index, the first frame), the median time of one frame (a redraw)
at the whole-map view and zoomed in x8, and of 1,000 hit tests (what a pointer move does).
"""

from __future__ import annotations

import argparse
import base64
import tempfile
from pathlib import Path

import numpy as np

from generator.site.mapview import POINTS_FILE, QUANT
from generator.site.render import render_site
from generator.site.search import script_call
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.fake_store import make_store


def synthetic_points(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, (200, 2))
    unit = np.clip(centres[rng.integers(0, 200, n)] + rng.normal(0, 0.03, (n, 2)), 0, 1)
    q = np.round(unit * QUANT).astype("<u2")
    stats = [{"k": k, "name": k, "scale": "lin", "lo": 0.0, "hi": 1.0,
              "v": base64.b64encode(rng.integers(0, 256, n, dtype=np.uint8).tobytes()).decode()}
             for k in ("d", "x", "am")]
    return script_call("fbMap", {"n": n, "box": [0.0, 0.0, 1.0],
                                 "xy": base64.b64encode(q.tobytes()).decode(), "stats": stats})


TIMING = """() => {
  const map = document.getElementById('mapbox').fbMap, v = map.view, out = {};
  function frames(k) {
    const t = [];
    for (let i = 0; i < k; i++) { const s = performance.now(); map.draw(); t.push(performance.now() - s); }
    t.sort((a, b) => a - b);
    return t[k >> 1];
  }
  out.frame_ms = frames(15);
  v.z = 8; out.frame_zoomed_ms = frames(15); v.z = 1;
  const s = performance.now();
  for (let i = 0; i < 1000; i++) map.hit(100 + (i % 37) * 13, 80 + (i % 23) * 17);
  out.hit_ms_per_1000 = performance.now() - s;
  return out;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536, 131072])
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        site = render_site(make_store(), Path(tmp) / "site", quiet=True).out
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for n in args.sizes:
            data = synthetic_points(n)
            (site / POINTS_FILE).write_bytes(data)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((site / "index.html").resolve().as_uri())
            start = page.evaluate("performance.now()")
            page.evaluate("document.getElementById('mapbox').scrollIntoView()")
            page.wait_for_selector("#mapbox[data-ready]")
            ready = page.evaluate("performance.now()") - start
            timing = page.evaluate(TIMING)
            print(f"{n:>7,} latents: points.js {len(data) / 1e6:.2f} MB, drawn {ready:.0f} ms after "
                  f"scrolling to it, a frame {timing['frame_ms']:.1f} ms (zoomed x8: "
                  f"{timing['frame_zoomed_ms']:.1f} ms), 1,000 hit tests "
                  f"{timing['hit_ms_per_1000']:.1f} ms", flush=True)
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
