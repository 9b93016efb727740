"""`build`: every stage, compute then render, into staging folders swapped in together.

The compute stages are generator/run/pipeline.py's; the store is written by
generator/store/io.py and the site by generator/site/render.py.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from generator.config import BuildConfig
from generator.run.pipeline import StageTimes, compute, output_bytes
from generator.store.io import write_store

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from generator.compute.distributed import Ranks
    from generator.explain.labels import Label
    from generator.store.schema import StoreData, StoreMeta


def build(cfg: BuildConfig) -> StageTimes:
    """Check everything that can be checked without compute, compute, then write the store and
    the site into staging folders and swap both in together: a build that fails at any point,
    or is stopped, leaves the previous store and site as they were, as a pair."""
    from generator.compute.distributed import rank_from_env, start, stop
    from generator.explain.delphi import load_imported
    from generator.files.lock import locked
    from generator.files.outputs import check_outputs
    from generator.inputs.models import pick_device
    from generator.site.render import shown_explanations

    times = StageTimes()
    cfg.validate()
    out, store = check_outputs(cfg.out, cfg.store)
    explanations, imported = load_imported(cfg.explanations)
    shown = shown_explanations(explanations, imported)  # checked against the SAE before compute
    # one build at a time on these folders; under torchrun, rank 0 holds the lock for all
    with locked({"--store": store, "--out": out}) if rank_from_env() == 0 else nullcontext():
        ranks = start(pick_device(cfg.device))
        try:
            if not ranks.main:  # its share of the compute; rank 0 writes the store and the site
                compute(cfg, times, shown, ranks)
                return times
            _build_main(cfg, times, explanations, ranks, out, store, imported, shown)
        finally:
            stop()
        if cfg.explain_model:
            times.run("explain", explain_then_render, cfg, explanations, imported)
        return times


def _build_main(cfg: BuildConfig, times: StageTimes, explanations: dict[int, str] | None,
                ranks: Ranks, out: Path, store: Path, imported: dict[int, Label],
                shown: dict[int, str]) -> None:
    from generator.compute.checkpoint import remove, resume_hint
    from generator.files.outputs import SITE, STORE, StagedOutputs, disk_full_error, is_disk_full
    from generator.files.signals import guard_forks
    from generator.store.io import read_meta

    d_sae = None
    try:
        with StagedOutputs({store: STORE, out: SITE}) as staged:
            data = compute(cfg, times, shown, ranks)
            assert data is not None
            d_sae = data.latents.d_sae
            times.run("store", write_store, data, staged.path(store))
            guard_forks()  # now that every library with at-fork callbacks is imported
            # with the labels `explain` wrote about a store of the same bytes (its log is
            # carried over at the swap)
            times.run("render", render, cfg, data, read_meta(staged.path(store)),
                      staged.path(out), explanations, imported)
            # the checkpoints go once the new pair is in place (a signal waits for both)
            staged.commit(then=lambda: remove(store))
    except OSError as err:
        if not is_disk_full(err):
            raise
        need = sum(output_bytes(cfg, d_sae).values()) if d_sae else None
        hint = resume_hint(store)
        kept = "the previous site and store are untouched" + (f"; then {hint}" if hint else "")
        raise disk_full_error(err, {"--store": store, "--out": out}, need, kept) from None


def explain_then_render(cfg: BuildConfig, explanations: dict[int, str] | None,
                        imported: dict[int, Label]) -> None:
    """`build --explain-endpoint URL --explain-model NAME`: `feature-browser explain` on the new
    store (its other options at their defaults), then the site rendered again with the labels."""
    from generator.explain.config import ExplainConfig
    from generator.explain.run import explain
    from generator.files.signals import Interrupted
    from generator.store.io import read_store

    resume = (f"go on with `feature-browser explain --store {cfg.store} --endpoint "
              f"{cfg.explain_endpoint} --model {cfg.explain_model}`, then `feature-browser render "
              f"--store {cfg.store} --out {cfg.out}` (the build itself is complete)")
    try:
        explain(ExplainConfig(store=cfg.store, endpoint=cfg.explain_endpoint,
                              model=cfg.explain_model, quiet=cfg.quiet), resume)
    except (KeyboardInterrupt, Interrupted):
        log.warning("the new store and site are in place; labelling stopped: %s", resume)
        raise
    data = read_store(cfg.store)
    render(cfg, data, data.meta, cfg.out, explanations, imported)


def render(cfg: BuildConfig, data: StoreData, meta: StoreMeta, out: Path,
           explanations: dict[int, str] | None, imported: dict[int, Label]) -> None:
    """The build's site into `out`, with the labels in cfg.store's answer log about the store
    `meta` describes (and `imported` ones over them)."""
    from generator.config import check_site_url
    from generator.explain.labels import read_labels
    from generator.site.render import render_site

    render_site(data, out, explanations=explanations, quiet=cfg.quiet, compact=cfg.compact,
                packed=cfg.packed, labels=read_labels(cfg.store, meta, imported),
                site_url=check_site_url(cfg.site_url) if cfg.site_url else None)

