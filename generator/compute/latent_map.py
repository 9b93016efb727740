"""The latent map: a 2-D layout of every latent, UMAP (umap-learn) of the decoder directions under
the cosine metric, so that latents writing similar directions sit close together (families,
splits). Computed once in the build (generator/run/pipeline.py), stored as `map_x` / `map_y` in
latents.parquet (docs/STORE.md), drawn by the render (generator/site/mapview.py, static/map.js);
the render never imports this module.

Neighbours: UMAP's graph is built from the exact decoder-cosine neighbours that the build
already computes for the latent pages (generator.compute.summaries.cosine_neighbours, a blocked product
on the build's device), asked for N_NEIGHBOURS - 1 instead of 5, and handed to umap-learn as
`precomputed_knn`. So the map adds no second all-pairs product, its neighbours are exact rather
than pynndescent's approximate ones, and pynndescent's numba kernels (about 45 s of JIT per
process) are never compiled.

Same bytes every run: UMAP is seeded (`random_state=seed`, which makes its optimisation
single-threaded) and every BLAS and numba thread pool is held at one thread while it runs, so the
layout does not depend on OMP_NUM_THREADS or on the number of build processes; coordinates are
rounded to MAP_DECIMALS decimals and stored as float32. (Another CPU or other library versions
may give another layout: bytes are reproducible on one machine and environment, as for the rest
of the store.)

Cost on a 2-core CPU (`bench/latent_map.py`, random decoder rows of width 768, the exact
neighbours given): UMAP runs on one thread, and its first call JIT-compiles its numba kernels
(about 8 s; now once per machine, cached on disk by cache_umap_kernels, 1.2 s after that). CPU
seconds of the whole call, JIT included, and UMAP's own peak memory:

    d_sae        UMAP (CPU s)   without the JIT   memory
    1,024 (demo)      ~10              1.5
    16,384            11.9             5.1
    65,536            34.6            26.4
    131,072           75.2            73.0         0.92 GB

so even 131,072 latents are fitted whole, with no subsample (the neighbours, d_sae² · d_model,
cost far more and are computed anyway). On a busy machine the wall time is longer (247 s at
131,072 with a load of 9 on the 2 cores).

Memory, with n = d_sae, d = d_model, k = N_NEIGHBOURS: a float32 host copy of W_dec, 4·n·d,
when it is not one already (on a GPU, or bf16), plus UMAP's own: the spectral initialisation's
Lanczos vectors, 8·n·sqrt(n), and the neighbour arrays, fuzzy graph (COO and CSR) and the
optimiser's edge lists, about 250·n·k bytes: 0.87 GB at n = 131,072 (0.92 GB measured).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

log = logging.getLogger(__name__)

N_NEIGHBOURS = 15
"""UMAP's n_neighbors, the latent itself included (umap-learn's default): how local the layout
is. The build asks cosine_neighbours for N_NEIGHBOURS - 1 neighbours."""
MIN_DIST = 0.1
"""UMAP's min_dist: how tightly points may pack (umap-learn's default)."""
MAP_DECIMALS = 4
"""coordinates are rounded to this many decimals (a UMAP layout spans ~10-30 units)."""


@contextmanager
def _one_thread() -> Iterator[None]:
    """BLAS and numba on one thread: UMAP's spectral initialisation then gives the same floats
    whatever the environment's thread settings."""
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        numba.set_num_threads(before)


def knn_graph(nb_ids: np.ndarray, nb_sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's precomputed_knn from decoder-cosine neighbours (d_sae x m, best first, the latent
    itself excluded, as generator.compute.summaries.cosine_neighbours gives them): each row's own id
    first at distance 0, then its neighbours at cosine distance 1 - cos (clipped to [0, 2])."""
    n = nb_ids.shape[0]
    ids = np.concatenate([np.arange(n, dtype=np.int64)[:, None], nb_ids.astype(np.int64)], axis=1)
    dist = np.clip(1.0 - nb_sims.astype(np.float64), 0.0, 2.0).astype(np.float32)
    return ids, np.concatenate([np.zeros((n, 1), np.float32), dist], axis=1)


def latent_map(w_dec: np.ndarray, nb_ids: np.ndarray, nb_sims: np.ndarray,
               seed: int) -> np.ndarray:
    """(d_sae, 2) float32 map coordinates of the decoder rows `w_dec` (d_sae x d_model), from
    their N_NEIGHBOURS - 1 (or more) nearest decoder-cosine neighbours `nb_ids` / `nb_sims`;
    rounded to MAP_DECIMALS and deterministic for a given seed. A handful of latents (fewer than
    4) go on a line."""
    x = np.ascontiguousarray(w_dec, dtype=np.float32)
    n = x.shape[0]
    if n < 4:
        return np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)
    k = min(N_NEIGHBOURS, n)
    if nb_ids.shape != nb_sims.shape or nb_ids.shape[0] != n or nb_ids.shape[1] < k - 1:
        raise ValueError(f"the map needs {k - 1} neighbours per latent, got {nb_ids.shape}")
    ids, dist = knn_graph(nb_ids[:, :k - 1], nb_sims[:, :k - 1])
    with warnings.catch_warnings():
        # umap-learn warns that random_state forces one job, that there is no search index for
        # transform (not used), about disconnected components: none of it is actionable here
        warnings.simplefilter("ignore")
        # imported before the thread limit: threadpoolctl limits only the BLAS libraries loaded
        # when it starts (scipy's own OpenBLAS among them)
        import scipy.sparse.linalg  # noqa: F401
        import umap

        cache_umap_kernels()
        with _one_thread():
            reducer = umap.UMAP(n_neighbors=k, min_dist=MIN_DIST, metric="cosine",
                                random_state=seed, n_jobs=1, precomputed_knn=(ids, dist),
                                verbose=False)
            coords = np.asarray(reducer.fit_transform(x), dtype=np.float64)
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():  # never seen; a point UMAP could not place goes to the middle
        log.warning("latent map: %d latents could not be placed; put in the middle", bad.sum())
        coords[bad] = np.median(coords[~bad], axis=0) if (~bad).any() else 0.0
    return np.round(coords, MAP_DECIMALS).astype(np.float32)


@functools.cache
def cache_umap_kernels() -> int:
    """Keep umap-learn's compiled numba kernels on disk between runs: umap declares them without
    `cache=True`, so every build compiled them again (about 6 s of the demo's 7.6 s map stage;
    1.2 s with the cache, the same bytes). The cache goes where numba puts it (`__pycache__` beside
    umap's sources, else the user's cache folder); where neither can be written, the kernels are
    compiled as before. Returns the number of kernels cached (once per process)."""
    import umap.distances
    import umap.layouts
    import umap.sparse
    import umap.spectral
    import umap.umap_
    import umap.utils
    from numba.core.registry import CPUDispatcher

    cached = 0
    for module in (umap.umap_, umap.layouts, umap.spectral, umap.utils, umap.distances,
                   umap.sparse):
        for kernel in vars(module).values():
            if isinstance(kernel, CPUDispatcher):
                try:
                    kernel.enable_caching()
                    cached += 1
                except RuntimeError:  # no writable place for its cache: compiled per run
                    pass
    return cached


__all__ = ["MAP_DECIMALS", "N_NEIGHBOURS", "cache_umap_kernels", "knn_graph", "latent_map"]
