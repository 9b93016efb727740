"""`build`: every stage, compute then render, into staging folders swapped in together.

The compute stages are generator/run/pipeline.py's; the store is written by
generator/store/io.py and the site by generator/site/render.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from generator.config import BuildConfig
from generator.run.pipeline import StageTimes, compute
from generator.store.io import write_store

if TYPE_CHECKING:
    from generator.compute.distributed import Ranks


def build(cfg: BuildConfig) -> StageTimes:
    """Check everything that can be checked without compute, compute, then write the store and
    the site into staging folders and swap both in together: a build that fails at any point,
    or is stopped, leaves the previous store and site as they were, as a pair."""
    from generator.compute.distributed import start, stop
    from generator.files.outputs import check_outputs
    from generator.inputs.explanations import load_explanations
    from generator.inputs.models import pick_device

    times = StageTimes()
    cfg.validate()
    out, store = check_outputs(cfg.out, cfg.store)
    explanations = load_explanations(cfg.explanations) if cfg.explanations else None
    ranks = start(pick_device(cfg.device))
    try:
        if not ranks.main:  # its share of the compute; rank 0 writes the store and the site
            compute(cfg, times, explanations, ranks)
            return times
        return _build_main(cfg, times, explanations, ranks, out, store)
    finally:
        stop()


def _build_main(cfg: BuildConfig, times: StageTimes, explanations: dict[int, str] | None,
                ranks: Ranks, out: Path, store: Path) -> StageTimes:
    from generator.config import check_site_url
    from generator.files.outputs import StagedOutputs
    from generator.files.signals import guard_forks
    from generator.site.render import render_site

    with StagedOutputs([store, out]) as staged:
        data = compute(cfg, times, explanations, ranks)
        assert data is not None
        times.run("store", write_store, data, staged.path(store))
        guard_forks()  # now that every library with at-fork callbacks is imported
        times.run("render", render_site, data, staged.path(out), explanations=explanations,
                  quiet=cfg.quiet, compact=cfg.compact,
                  site_url=check_site_url(cfg.site_url) if cfg.site_url else None)
        staged.commit()
    from generator.compute.checkpoint import remove

    remove(store)
    return times

