"""The latent map: the layout (generator/latent_map.py: UMAP from decoder-cosine neighbours,
seeded, rounded) and its site files (generator/mapview.py: map/points.js, map/overview.png, the
latent pages' spot and map neighbours). The demo build's map is checked in test_build, the
drawing in a real Chromium in test_browser."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.latent_map import MAP_DECIMALS, N_NEIGHBOURS, knn_graph, latent_map
from generator.mapview import (
    N_MAP_NEIGHBOURS,
    OVERVIEW_FILE,
    POINTS_FILE,
    QUANT,
    SiteMap,
    map_neighbours,
)
from generator.render import render_site
from generator.summaries import cosine_neighbours
from tests.fake_store import make_store

ROOT = Path(__file__).resolve().parents[1]


def clustered_decoder(n_per: int = 40, k: int = 4, d: int = 32, seed: int = 0) -> np.ndarray:
    """k families of latents: a random direction each, every latent a small perturbation of its
    family's direction (rows of family f are f*n_per .. (f+1)*n_per - 1)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    rows = np.repeat(centres, n_per, axis=0) + 0.15 * rng.standard_normal((k * n_per, d))
    return rows.astype(np.float32)


def layout(w: np.ndarray, seed: int = 0) -> np.ndarray:
    ids, sims = cosine_neighbours(torch.from_numpy(w), N_NEIGHBOURS - 1)
    return latent_map(w, ids, sims, seed)


@pytest.fixture(scope="module")
def families() -> tuple[np.ndarray, np.ndarray]:
    w = clustered_decoder()
    return w, layout(w)


def test_layout_shape_finite_rounded(families) -> None:
    w, xy = families
    assert xy.shape == (len(w), 2) and xy.dtype == np.float32
    assert np.isfinite(xy).all()
    assert np.array_equal(xy, np.round(xy.astype(np.float64), MAP_DECIMALS).astype(np.float32))


def test_layout_is_seeded_and_reproducible(families) -> None:
    w, xy = families
    assert layout(w).tobytes() == xy.tobytes()
    assert layout(w, seed=1).tobytes() != xy.tobytes()


def test_families_of_directions_sit_together(families) -> None:
    """Every latent's nearest map neighbour is of its own family, and families lie apart: what
    the map is for."""
    w, xy = families
    family = np.arange(len(w)) // 40
    nb, _ = map_neighbours(xy.astype(np.float64), 3)
    assert (family[nb[:, 0]] == family).mean() > 0.95
    centres = np.stack([xy[family == f].mean(0) for f in range(4)])
    spread = max(np.linalg.norm(xy[family == f] - centres[f], axis=1).mean() for f in range(4))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(4) for b in range(a + 1, 4)]
    assert min(gaps) > 2 * spread


@pytest.mark.parametrize("n", [1, 3, 4, 9, 16])
def test_few_latents(n: int) -> None:
    w = np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)
    ids, sims = cosine_neighbours(torch.from_numpy(w), N_NEIGHBOURS - 1)
    xy = latent_map(w, ids, sims, 0)
    assert xy.shape == (n, 2) and np.isfinite(xy).all()


def test_knn_graph_puts_each_latent_first() -> None:
    ids = np.array([[1, 2], [0, 2], [1, 0]])
    sims = np.array([[0.9, 0.1], [0.9, -0.5], [0.3, 0.1]], dtype=np.float32)
    knn, dist = knn_graph(ids, sims)
    assert knn.tolist() == [[0, 1, 2], [1, 0, 2], [2, 1, 0]]
    assert np.allclose(dist, [[0, 0.1, 0.9], [0, 0.1, 1.5], [0, 0.7, 0.9]])


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


# ---------------------------------------------------------------------------------------------
# site files


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
            "from generator.render import render_site; "
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
