"""generator.site.mapview: the map's site files (map/points.js, map/overview.png), the latent
pages' spot and map neighbours (against a brute force), the index's section. The demo build's
map is checked in tests/run/test_build.py, the drawing in a real Chromium in
tests/site/test_browser.py."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from generator.site.mapview import (
    N_MAP_NEIGHBOURS,
    OVERVIEW_FILE,
    POINTS_FILE,
    QUANT,
    SiteMap,
    map_neighbours,
)
from generator.site.render import render_site
from tests.fake_store import make_store

ROOT = Path(__file__).resolve().parents[2]


def test_map_neighbours_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    xy = np.round(rng.normal(size=(300, 2)), 1)  # rounded: many exact ties
    ids, dist = map_neighbours(xy, 6)
    full = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(full, np.inf)
    for i in range(len(xy)):
        want = sorted(range(len(xy)), key=lambda j: (full[i, j], j))[:6]
        assert ids[i].tolist() == want
        assert np.allclose(dist[i], full[i, want])
    ids, dist = map_neighbours(xy[:3], 6)
    assert (ids[:, 2:] == -1).all() and np.isnan(dist[:, 2:]).all()


def read_points(site: Path) -> dict:
    raw = (site / POINTS_FILE).read_text()
    assert raw.startswith("fbMap(") and raw.endswith(");\n")
    return json.loads(raw[len("fbMap("):-3])


def test_points_file_holds_every_latent(site: Path) -> None:
    data = make_store()
    points = read_points(site)
    n = data.latents.d_sae
    assert points["n"] == n
    q = np.frombuffer(base64.b64decode(points["xy"]), dtype="<u2").reshape(n, 2)
    x0, y0, span = points["box"]
    back = np.stack([x0 + q[:, 0] / QUANT * span, y0 + q[:, 1] / QUANT * span], axis=1)
    stored = np.stack([data.latents.map_x, data.latents.map_y], axis=1)
    assert np.abs(back - stored).max() < 2 * span / QUANT + 1e-4
    assert q.min() == 0 and q.max() == QUANT  # the map fills the unit square on its long side
    names = {s["k"]: s for s in points["stats"]}
    assert set(names) == {"d", "x", "am"}
    for s in names.values():
        codes = np.frombuffer(base64.b64decode(s["v"]), dtype=np.uint8)
        assert len(codes) == n
    density = np.frombuffer(base64.b64decode(names["d"]["v"]), dtype=np.uint8)
    dead = data.latents.n_active == 0
    assert (density[dead] == 0).all() and (density[~dead] > 0).all()
    order = np.argsort(data.latents.n_active[~dead], kind="stable")
    assert (np.diff(density[~dead][order].astype(int)) >= 0).all()  # monotone in density


def test_overview_picture(site: Path) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO((site / OVERVIEW_FILE).read_bytes()))
    assert img.size == (200, 200) and img.mode == "RGBA"
    assert np.asarray(img)[..., 3].any()


def test_latent_pages_show_their_spot_and_map_neighbours(site: Path) -> None:
    data = make_store()
    smap = SiteMap(data)
    for i in (0, 11):
        raw = (site / "features" / f"{i}.html").read_text()
        section = raw[raw.index("<section id=mapnb>"):]
        section = section[:section.index("</section>")]
        links = re.findall(r'<a [^>]*href="?([^" >]+)', section)
        assert links[0] == f"../index.html#map={i}"
        assert links[1:] == [f"{j}.html" for j in smap.nb_ids[i][:N_MAP_NEIGHBOURS]]
        left, top = map(float, re.search(r"left:([\d.]+)%;top:([\d.]+)%", section).groups())
        u = smap.unit[i]
        assert abs(left - (6 + u[0] * 188) / 2) < 0.06 and abs(top - (6 + u[1] * 188) / 2) < 0.06
        assert 'src="../map/overview.png"' in section


def test_index_has_the_map_section(site: Path) -> None:
    raw = (site / "index.html").read_text()
    assert 'id=mapbox data-src=map/points.js' in raw and 'src="map/overview.png"' in raw


def test_no_map_without_coordinates(bare_site: Path) -> None:
    assert not (bare_site / "map").exists()
    assert "mapbox" not in (bare_site / "index.html").read_text()
    assert "mapnb" not in (bare_site / "features" / "0.html").read_text()


def test_render_imports_no_umap(tmp_path: Path) -> None:
    """The render stays pure: the map's files are made without umap, numba or torch."""
    code = ("import sys, pathlib; from tests.fake_store import make_store; "
            "from generator.site.render import render_site; "
            f"render_site(make_store(), pathlib.Path({str(tmp_path / 'site')!r}), quiet=True, "
            "workers=1); "
            "bad = [m for m in ('umap', 'numba', 'torch', 'pynndescent') if m in sys.modules]; "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "site" / POINTS_FILE).is_file()


def test_site_is_byte_identical_across_renders(tmp_path: Path) -> None:
    data = make_store()
    a = render_site(data, tmp_path / "a", quiet=True, workers=1).out
    b = render_site(data, tmp_path / "b", quiet=True, workers=2, chunk=3).out
    for name in (POINTS_FILE, OVERVIEW_FILE, "features/3.html"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
