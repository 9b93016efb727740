"""Render stage: a store in, a static website out (docs/ARCHITECTURE.md). Pure: no torch, no sae_lens.

Layout of the site (every link relative, so it works from file://, localhost and a sub-path):

    index.html            overview, summary charts, paginated sortable table, search box
    features/<id>.html    one page per latent (dead ones too): the permalink
    embed/<id>.html       the iframe URL: a stub opening the latent page's card mode,
                          features/<id>.html?embed (not with `compact`: the snippet names the
                          card mode directly)
    search/<key>/<c>.js   the latent table, one file per table page and sort key;
                          search/s<k>.js: term-index shards; search/t<k>.js: token-index
                          shards (all in generator/site/search.py)
    seqs/t.js, seqs/<k>.js  the kept sequences for "expand to the whole sequence": a table of
                          token displays and, SEQ_SHARD sequences per file, symbol codes
    static/<name>.<hash>.<ext>   CSS/JS/icons copied from the repo's static/, content-hashed
    map/points.js, map/overview.png   the latent map, when the store has one (site/mapview.py):
                          the index's canvas data (loaded when it scrolls into view) and a
                          picture of the whole map (latent pages mark their spot on it)
    prompts/<n>.html, prompts/index.html   the prompt view, when the store has prompts
                          (generator.site.views): every token's top latents, the prompt's
                          latents, data inline so that they work from file://
    corpus/<seq>.html, corpus/index.html   the same view of every sequence a shown example
                          points to, when the store has it and the site is not `compact` (the
                          lists: 1,000 rows a page, index-2.html, ...)
    cards/<id>.png        only with `site_url`: the latent's 1200 x 630 link card
                          (generator.site.cards), its page's og:image / twitter:image
    .nojekyll

The packed site (`packed`, generator/site/packed.py; for SAEs whose pages would not fit 1 GB) has
latent.html (the viewer: latent.html#<id> is a latent's permalink) and data/<k>.bin (the latents'
records, compressed) instead of features/ and embed/, seqs/*.bin instead of seqs/*.js, and the
table's rows stored once (generator/site/search.py PACKED_TABLE); no corpus view, no link cards.
It is read with fetch(), so it is served over HTTP (GitHub Pages, `feature-browser serve`).

With `site_url` (the site's public address) pages also carry their absolute address (og:url, a
canonical link), og:title / og:description and the card; without it nothing absolute is written.

This module is the entry point: it checks the inputs, stages the site in a temporary folder
that replaces `out` only when complete, and measures what was written. The files are written by
generator/site/writer.py from the page contexts of generator/site/builder.py and views.py; the
per-page data blob the browser reads is documented in generator/site/codec.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from generator.config import check_site_url
from generator.explain.labels import Label
from generator.files.atomic import atomic_dir
from generator.files.outputs import SITE, check_output
from generator.inputs.explanations import check_explanations
from generator.site.contexts import COMPACT_SHOWING, DEFAULT_SHOWING, TABLE_PAGE
from generator.site.search import SHARD_TARGET_BYTES
from generator.site.views import VIEW_CHUNK
from generator.site.writer import LATENT_CHUNK, SiteWriter
from generator.store.schema import StoreData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderReport:
    """What a render wrote: for the CLI's summary line and for size budgets."""

    out: Path
    latents: int
    pages: int
    files: int
    total_bytes: int
    bytes_by_part: dict[str, int]
    """bytes per top-level part: features, embed, search, seqs, static, cards, index, other."""
    seconds: float

    @property
    def bytes_per_latent(self) -> float:
        return self.total_bytes / max(1, self.latents)


def shown_explanations(explanations: dict[int, str] | None,
                       labels: dict[int, Label] | None) -> dict[int, str]:
    """The text each latent shows: an imported explanation, else its label's."""
    return {**{i: label.explanation for i, label in (labels or {}).items()},
            **(explanations or {})}


def render_site(data: StoreData, out: Path, explanations: dict[int, str] | None = None,
                quiet: bool = False, *, table_rows: int = TABLE_PAGE,
                compact: bool = False, shard_bytes: int = SHARD_TARGET_BYTES,
                workers: int | None = None, chunk: int = LATENT_CHUNK,
                site_url: str | None = None, corpus_view: bool | None = None,
                view_chunk: int = VIEW_CHUNK, packed: bool | None = None,
                labels: dict[int, Label] | None = None) -> RenderReport:
    """Render the whole site into `out`, atomically: the old site stays intact if anything fails.

    `compact` ships less of each latent (generator.site.contexts.COMPACT_SHOWING) so that a
    131,072-latent site fits in 1 GB. `site_url`, the site's public address, adds absolute links (og:url,
    canonical) and a link card per latent (cards/<id>.png) to the pages. `corpus_view` writes
    the corpus view's pages (True) or not (False); None: unless `compact`.

    `table_rows` (rows per index-table page and file) and `shard_bytes` (target size of a search
    shard) exist so that tests can shard a small store as finely as a 131k-latent one. Pages
    are written by `workers` processes (default: one per available CPU), `chunk` latents (and
    `view_chunk` prompt or corpus pages) at a time; the output does not depend on any of them.

    `labels`: generated explanations (generator/explain/labels.py read_labels): shown with their
    model and scores, unless `explanations` (imported ones) names the latent too.

    `packed` writes the packed site (generator/site/packed.py: one viewer page, the latents in
    compressed shards; no embed files, link cards or corpus view); None: when a page per latent
    would not fit GitHub Pages' 1 GB (`wants_packed`), with a log line saying so."""
    start = time.perf_counter()
    out = Path(out)
    labels = {i: label for i, label in (labels or {}).items() if i not in (explanations or {})}
    explanations = shown_explanations(explanations, labels)
    check_explanations(explanations, data.latents.d_sae)  # a delphi run's ids too
    root_url = check_site_url(site_url) if site_url is not None else None
    _check_target(out)
    if packed is None:
        packed = wants_packed(data.latents.d_sae, compact)
        if packed:
            log.info("%d latents: writing the packed site (latent.html#<id>), since a page per "
                     "latent would not fit GitHub Pages' 1 GB (--no-packed writes the pages)",
                     data.latents.d_sae)
    with atomic_dir(out, SITE.names) as tmp:
        showing = COMPACT_SHOWING if compact else DEFAULT_SHOWING
        if corpus_view is not None:
            showing = dataclasses.replace(showing, corpus_view=corpus_view)
        if packed:  # a page per kept sequence would be as many files as latents
            showing = dataclasses.replace(showing, corpus_view=False, embed_files=False)
        SiteWriter(data, tmp, explanations, quiet, table_rows, shard_bytes, workers, chunk,
                   showing, root_url, view_chunk, packed, labels).write_all()
    report = _measure(out, data.latents.d_sae, time.perf_counter() - start)
    log.info("wrote %d pages (%.1f MB, %.0f KB per latent) to %s in %.1f s", report.pages,
             report.total_bytes / 1e6, report.bytes_per_latent / 1e3, out, report.seconds)
    if report.total_bytes > PAGES_LIMIT:
        log.warning(size_advice(report, compact))
    return report


PAGES_LIMIT = 1_000_000_000
"""GitHub Pages' limit on a published site (1 GB)."""
PAGE_BYTES = {False: 15_000, True: 7_600}
"""bytes a latent costs a page-per-latent site, all-in (default, compact: README "Site size")."""


PACKED_COMPACT_BYTES = 2_000
"""bytes a latent costs a packed site with --compact, all-in (1.78 KB on the tiled demo,
BENCHMARKS.md §9, and some room)."""


def wants_packed(d_sae: int, compact: bool) -> bool:
    """Whether a page per latent would overflow GitHub Pages' 1 GB."""
    return d_sae * PAGE_BYTES[compact] > PAGES_LIMIT


def size_advice(report: RenderReport, compact: bool = False) -> str:
    """One line: the site is over GitHub Pages' limit, its largest parts, and the options that
    shrink them (those that apply to this site; `compact`: it was rendered with --compact)."""
    parts = sorted(report.bytes_by_part.items(), key=lambda kv: -kv[1])[:3]
    listed = ", ".join(f"{name}/ {size / 1e6:,.0f} MB" for name, size in parts)
    fixes = []
    if "corpus" in report.bytes_by_part:
        fixes.append(f"--no-corpus-view drops corpus/ "
                     f"({report.bytes_by_part['corpus'] / 1e6:,.0f} MB)")
    if "cards" in report.bytes_by_part:
        fixes.append("leaving out --site-url drops cards/")
    if "embed" in report.bytes_by_part:  # only the default site has embed files
        fixes.append("--compact ships less per latent (README, Site size)")
    if "data" in report.bytes_by_part and not compact:  # a packed site
        fixes.append(f"--compact ships ~40% less a latent (a packed site fits up to "
                     f"~{PAGES_LIMIT // PACKED_COMPACT_BYTES:,} latents)")
    if "features" in report.bytes_by_part:
        fixes.append("--packed writes one viewer page and compressed shards instead of a page "
                     "per latent")
    advice = "; ".join(fixes) if fixes else "host it elsewhere, or analyse fewer latents"
    return (f"the site is {report.total_bytes / 1e9:.2f} GB, over GitHub Pages' 1 GB limit "
            f"(largest: {listed}); {advice}")


def _check_target(out: Path) -> None:
    """Refuse to replace a folder that is not a site we wrote (e.g. `--out ~`), a file, or the
    current folder: the same guard as a build's --out."""
    check_output("--out", out, SITE)


def _measure(out: Path, latents: int, seconds: float) -> RenderReport:
    parts: dict[str, int] = defaultdict(int)
    pages = files = 0
    for path in sorted(out.rglob("*")):
        if path.is_file():
            rel = path.relative_to(out).parts
            part = rel[0] if len(rel) > 1 else ("index" if rel[0] == "index.html" else "other")
            parts[part] += path.stat().st_size
            files += 1
            pages += path.suffix == ".html"
    return RenderReport(out=out, latents=latents, pages=pages, files=files,
                        total_bytes=sum(parts.values()), bytes_by_part=dict(sorted(parts.items())),
                        seconds=seconds)


__all__ = ["PAGES_LIMIT", "RenderReport", "render_site", "size_advice"]
