"""generator.compute.latent_map: the layout (UMAP from decoder-cosine neighbours, seeded,
rounded): shape, reproducibility, families of directions together, few latents, the kNN graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.compute.latent_map import MAP_DECIMALS, N_NEIGHBOURS, knn_graph, latent_map
from generator.compute.summaries import cosine_neighbours
from generator.site.mapview import map_neighbours


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


@pytest.mark.slow  # two fresh processes
def test_umaps_compiled_kernels_are_reused_by_the_next_process(tmp_path):
    """umap-learn's numba kernels are compiled without cache=True; the map turns caching on, so
    a second build loads them from disk instead of compiling them again (same coordinates)."""
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np, torch, umap.layouts, umap.umap_, umap.utils\n"
        "from numba.core.registry import CPUDispatcher\n"
        "from generator.compute.latent_map import latent_map, N_NEIGHBOURS\n"
        "from generator.compute.summaries import cosine_neighbours\n"
        "w = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)\n"
        "ids, sims = cosine_neighbours(torch.from_numpy(w), N_NEIGHBOURS - 1)\n"
        "xy = latent_map(w, ids, sims, 0)\n"
        "kernels = [k for m in (umap.layouts, umap.umap_, umap.utils) for k in vars(m).values()\n"
        "           if isinstance(k, CPUDispatcher)]\n"
        "print(sum(sum(k.stats.cache_hits.values()) for k in kernels), xy.tobytes().hex()[:32])\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=env, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    (hits_first, xy_first), (hits_second, xy_second) = (r.stdout.split() for r in runs)
    assert xy_first == xy_second
    assert int(hits_second) > int(hits_first)
    assert int(hits_second) > 0
