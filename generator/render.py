"""Render stage: a store in, a static website out (DESIGN §5). Pure: no torch, no sae_lens.

Layout of the site (every link relative, so it works from file://, localhost and a sub-path):

    index.html            overview, summary charts, paginated sortable table, search box
    features/<id>.html    one page per latent (dead ones too): the permalink
    embed/<id>.html       the iframe URL: a stub opening the latent page's card mode,
                          features/<id>.html?embed (not with `compact`: the snippet names the
                          card mode directly)
    search/<key>/<c>.js   the latent table, one file per table page and sort key;
                          search/s<k>.js: term-index shards; search/t<k>.js: token-index
                          shards (all in search.py)
    seqs/t.js, seqs/<k>.js  the kept sequences for "expand to the whole sequence": a table of
                          token displays and, SEQ_SHARD sequences per file, symbol codes
    static/<name>.<hash>.<ext>   CSS/JS/icons copied from the repo's static/, content-hashed
    map/points.js, map/overview.png   the latent map, when the store has one (generator.mapview):
                          the index's canvas data (loaded when it scrolls into view) and a
                          picture of the whole map (latent pages mark their spot on it)
    prompts/<n>.html, prompts/index.html   the prompt view, when the store has prompts
                          (generator.promptpages): every token's top latents, the prompt's
                          latents, data inline so that they work from file://
    corpus/<seq>.html, corpus/index.html   the same view of every sequence a shown example
                          points to, when the store has it and the site is not `compact` (the
                          lists: 1,000 rows a page, index-2.html, ...)
    cards/<id>.png        only with `site_url`: the latent's 1200 x 630 link card
                          (generator.cards), its page's og:image / twitter:image
    .nojekyll

With `site_url` (the site's public address) pages also carry their absolute address (og:url, a
canonical link), og:title / og:description and the card; without it nothing absolute is written.

This module writes files: the page contexts come from `generator.pages` (which documents the
per-page data blob the browser reads), the inline charts from `generator.charts`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import multiprocessing
import os
import posixpath
import signal
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import orjson
from tqdm import tqdm

import generator
from generator.atomic import atomic_dir
from generator.cards import card_png
from generator.charts import round3
from generator.config import check_site_url
from generator.errors import UserError
from generator.pages import (
    COMPACT_SHOWING,
    DEFAULT_SHOWING,
    TABLE_PAGE,
    LatentPage,
    PageBuilder,
    Showing,
    site_info,
    varint_code,
)
from generator.promptpages import write_prompt_pages
from generator.quality import FLAGS
from generator.search import (
    SHARD_TARGET_BYTES,
    Postings,
    SearchIndex,
    dumps,
    script_call,
    table_files,
    terms_of,
    token_index_files,
)
from generator.store import EXAMPLE_TOP, StoreData
from generator.tokens import display_json, display_text

log = logging.getLogger(__name__)

SEQ_SHARD = 64
"""sequences per seqs/<k>.js file."""
LATENT_CHUNK = 256
"""latents per unit of work of the page workers."""
SITE_MARKER = ".nojekyll"


# ---------------------------------------------------------------------------------------------
# entry points


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


def render_site(data: StoreData, out: Path, explanations: dict[int, str] | None = None,
                quiet: bool = False, *, table_rows: int = TABLE_PAGE,
                compact: bool = False, shard_bytes: int = SHARD_TARGET_BYTES,
                workers: int | None = None, chunk: int = LATENT_CHUNK,
                site_url: str | None = None, corpus_view: bool | None = None) -> RenderReport:
    """Render the whole site into `out`, atomically: the old site stays intact if anything fails.

    `compact` ships less of each latent (generator.pages.COMPACT_SHOWING) so that a 131,072-latent
    site fits in 1 GB. `site_url`, the site's public address, adds absolute links (og:url,
    canonical) and a link card per latent (cards/<id>.png) to the pages. `corpus_view` writes
    the corpus view's pages (True) or not (False); None: unless `compact`.

    `table_rows` (rows per index-table page and file) and `shard_bytes` (target size of a search
    shard) exist so that tests can shard a small store as finely as a 131k-latent one. Pages
    are written by `workers` processes (default: one per available CPU), `chunk` latents at a
    time; the output does not depend on either."""
    start = time.perf_counter()
    out = Path(out)
    explanations = dict(explanations or {})
    _check_explanations(explanations, data.latents.d_sae)
    root_url = check_site_url(site_url) if site_url is not None else None
    _check_target(out)
    with atomic_dir(out) as tmp:
        showing = COMPACT_SHOWING if compact else DEFAULT_SHOWING
        if corpus_view is not None:
            showing = dataclasses.replace(showing, corpus_view=corpus_view)
        _SiteWriter(data, tmp, explanations, quiet, table_rows, shard_bytes, workers, chunk,
                    showing, root_url).write_all()
    report = _measure(out, data.latents.d_sae, time.perf_counter() - start)
    log.info("wrote %d pages (%.1f MB, %.0f KB per latent) to %s in %.1f s", report.pages,
             report.total_bytes / 1e6, report.bytes_per_latent / 1e3, out, report.seconds)
    if report.total_bytes > PAGES_LIMIT:
        log.warning(size_advice(report))
    return report


PAGES_LIMIT = 1_000_000_000
"""GitHub Pages' limit on a published site (1 GB)."""


def size_advice(report: RenderReport) -> str:
    """One line: the site is over GitHub Pages' limit, its largest parts, and the options that
    shrink them (those that apply to this site)."""
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
    advice = "; ".join(fixes) if fixes else "host it elsewhere, or analyse fewer latents"
    return (f"the site is {report.total_bytes / 1e9:.2f} GB, over GitHub Pages' 1 GB limit "
            f"(largest: {listed}); {advice}")


def load_explanations(path: Path) -> dict[int, str]:
    """Explanations from jsonl `{"latent": int, "explanation": str}` or a Neuronpedia export.

    Neuronpedia's explanation export is a JSON list (or jsonl) of objects carrying `index` (a
    string or an int) and `description` (plus modelId, layer, ... which are ignored). When a latent
    has several explanations, the first one wins.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"explanations file {path} not found; pass an existing .jsonl file or a "
                        "Neuronpedia explanation export (.json)")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # editors on Windows add a BOM
    except UnicodeDecodeError as err:
        raise UserError(f"explanations file {path} is not UTF-8 ({err.reason}); re-save it as "
                        "UTF-8") from None
    out: dict[int, str] = {}
    for where, record in _explanation_records(text, path):
        latent, explanation = _explanation_fields(record, where)
        out.setdefault(latent, explanation)
    return out


def _explanation_records(text: str, path: Path) -> Iterator[tuple[str, Any]]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = orjson.loads(stripped)
        except orjson.JSONDecodeError as err:
            raise UserError(f"explanations file {path} is not valid JSON ({err}); fix it or "
                            "export it again") from None
        for n, record in enumerate(records):
            yield f"{path} entry {n}", record
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{n}", orjson.loads(line)
            except orjson.JSONDecodeError:
                raise UserError(f"{path}:{n} is not a JSON object; each line must be like "
                                '{"latent": 12, "explanation": "..."}') from None


def _explanation_fields(record: Any, where: str) -> tuple[int, str]:
    hint = ('expected {"latent": 12, "explanation": "..."} or Neuronpedia\'s '
            '{"index": "12", "description": "..."}')
    if not isinstance(record, dict):
        raise UserError(f"{where} is not a JSON object; {hint}")
    latent = next((record[k] for k in ("latent", "index", "feature") if k in record), None)
    explanation = next((record[k] for k in ("explanation", "description") if k in record), None)
    if isinstance(latent, str) and latent.strip().isdigit():
        latent = int(latent)
    if isinstance(latent, bool) or not isinstance(latent, int) or latent < 0:
        raise UserError(f"{where} has no valid latent id (got {latent!r}); {hint}")
    if not isinstance(explanation, str):
        raise UserError(f"{where} has no explanation text; {hint}")
    return latent, explanation.strip()


def _check_explanations(explanations: dict[int, str], d_sae: int) -> None:
    bad = sorted(i for i in explanations if not 0 <= i < d_sae)
    if bad:
        raise UserError(f"explanations name latent {bad[0]} but this SAE has {d_sae} latents "
                        "(0..{}); is the file for another SAE?".format(d_sae - 1))


# ---------------------------------------------------------------------------------------------
# atomic output


def _check_target(out: Path) -> None:
    """Refuse to replace a non-empty folder that is not a site we wrote (e.g. `--out ~`)."""
    if out.exists() and (not out.is_dir() or
                         (any(out.iterdir()) and not (out / SITE_MARKER).exists())):
        raise UserError(f"{out} exists and is not a feature-browser site; choose a new or empty "
                        "folder for --out")


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


# ---------------------------------------------------------------------------------------------
# resources, links


def resource_dir(name: str) -> Path:
    """`templates` or `static`: inside the package (wheel) or beside it (source checkout)."""
    package = Path(generator.__file__).resolve().parent
    for candidate in (package / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise UserError(f"cannot find the {name}/ folder of feature-browser next to {package}; "
                    "reinstall the package")


def relative_url(target: str, page: str) -> str:
    """The link from site page `page` to site path `target` (both relative to the site root)."""
    if target.startswith("#"):
        return target
    path, _, anchor = target.partition("#")
    rel = posixpath.relpath(path or page, posixpath.dirname(page) or ".")
    if path.endswith("/") and not rel.endswith("/"):
        rel += "/"
    return rel + (f"#{anchor}" if anchor else "")


@jinja2.pass_context
def _url_filter(context: jinja2.runtime.Context, target: str) -> str:
    return relative_url(target, context["page_path"])



@dataclass(frozen=True)
class PageLinks:
    """A page's absolute addresses (only with a site URL): what link previews read."""

    url: str
    """the page's own address: og:url and the canonical link."""
    image: str | None = None
    """its link card (cards/<id>.png): og:image and twitter:image."""
    image_alt: str = ""


# ---------------------------------------------------------------------------------------------
# the writer


class _SiteWriter:
    """Writes one site into a fresh folder: pages, embeds, search index, table, sequences."""

    def __init__(self, data: StoreData, out: Path, explanations: dict[int, str], quiet: bool,
                 table_rows: int, shard_bytes: int, workers: int | None = None,
                 chunk: int = LATENT_CHUNK, showing: Showing = DEFAULT_SHOWING,
                 site_url: str | None = None) -> None:
        self.data, self.out, self.explanations, self.quiet = data, out, explanations, quiet
        self.site_url = site_url
        """the site root's public address ending in "/", or None: nothing absolute."""
        self.table_rows, self.shard_bytes = table_rows, shard_bytes
        self.token_terms: dict[int, list[str]] = {}
        self.workers = max(1, workers if workers is not None else len(os.sched_getaffinity(0)))
        self.chunk = chunk
        self.showing = showing
        self.pages = PageBuilder(data, explanations, showing)
        self.view: Any = None
        """the prompt or corpus view's PromptPages while its pages are written."""

    def write_all(self) -> None:
        self.assets = copy_static(resource_dir("static"), self.out / "static")
        self.env = make_env(self.assets)
        self.site = site_info(self.data, self.showing, self.pages.shown)
        for folder in (("features", "search") + (("embed",) if self.showing.embed_files else ())
                       + (("cards",) if self.site_url else ())):
            (self.out / folder).mkdir(parents=True, exist_ok=True)
        search = SearchIndex(self.shard_bytes)
        for postings in self.latent_pages():
            search.merge(postings)
        shards, _ = search.write(self.out / "search")
        token_shards = self.write_token_index()
        table = self.write_table()
        self.write_sequences()
        if self.pages.map is not None:
            self.pages.map.write(self.out)  # map/points.js, map/overview.png
        write_prompt_pages(self)  # prompts/<n>.html, prompts/index.html (when the store has them)
        self.render("index.html", "index.html", page=self.pages.index_page(shards, table, token_shards),
                    links=PageLinks(self.site_url) if self.site_url else None)
        (self.out / SITE_MARKER).write_bytes(b"")

    def latent_pages(self) -> Iterator[Postings]:
        """Write every latent's page and embed; yields the search postings chunk by chunk, in
        latent order (see in_parallel)."""
        d_sae = self.data.latents.d_sae
        chunks = [(lo, min(d_sae, lo + self.chunk)) for lo in range(0, d_sae, self.chunk)]
        yield from self.in_parallel("latent_chunk", chunks, "pages", "latent")

    def in_parallel(self, method: str, chunks: list[tuple[int, int]], desc: str,
                    unit: str) -> Iterator[Any]:
        """`self.<method>(lo, hi)` of every chunk, yielded in chunk order. Chunks run in forked
        worker processes when there are several CPUs and chunks (they inherit this writer:
        nothing is pickled but the results); every file's content depends only on the store,
        so the site is the same byte for byte whatever the number of workers."""
        workers = min(self.workers, len(chunks))
        bar = tqdm(total=chunks[-1][1] - chunks[0][0] if chunks else 0, desc=desc, unit=unit,
                   disable=self.quiet)
        if workers <= 1:
            done: Iterable[Any] = (getattr(self, method)(lo, hi) for lo, hi in chunks)
            pool = None
        else:
            global _FORKED_WRITER
            _FORKED_WRITER = self  # inherited by the forked workers (nothing is pickled)
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals)
            done = pool.imap(_chunk_in_worker, [(method, lo, hi) for lo, hi in chunks])
        finished = False
        try:
            for (lo, hi), result in zip(chunks, done, strict=True):
                bar.update(hi - lo)
                yield result
            finished = True
        finally:
            bar.close()
            if pool is not None:
                # workers leave on their own once the queue is closed; terminate (SIGTERM) only
                # on an error, so that a parent's signal handlers can never keep one waiting
                if finished:
                    pool.close()
                else:
                    pool.terminate()
                pool.join()
                _FORKED_WRITER = None

    def view_chunk(self, lo: int, hi: int) -> None:
        """Pages lo..hi of the view being written (generator.promptpages)."""
        from generator.promptpages import write_view_pages

        assert self.view is not None
        write_view_pages(self, self.view, lo, hi)

    def latent_chunk(self, lo: int, hi: int) -> Postings:
        search = SearchIndex(self.shard_bytes)
        for i in range(lo, hi):
            page = self.pages.latent_page(i)
            links = None
            if self.site_url:
                url, image = self.site_url + f"features/{i}.html", f"cards/{i}.png"
                card = self.pages.card(i, page, url.split("://", 1)[1])
                (self.out / image).write_bytes(card_png(card))
                links = PageLinks(url, self.site_url + image, page.title)
            self.render(f"features/{i}.html", "feature.html", page=page, showing=self.showing,
                        links=links)
            if self.showing.embed_files:
                self.render(f"embed/{i}.html", "embed.html", page=page,
                            card=f"../features/{i}.html?embed")
            self.index_latent(search, i, page)
        return search.export()

    def render(self, path: str, template: str, links: PageLinks | None = None,
               **context: Any) -> None:
        root = relative_url("x", path)[:-1] or "./"
        html = self.env.get_template(template).render(page_path=path, root=root, site=self.site,
                                                      links=links, **context)
        target = self.out / path
        if path.count("/") > 1:
            target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            f.write(html.encode("utf-8"))

    def token_key(self, token_id: int) -> str:
        """The symbol-table key of a token shown on its own: its display as JSON."""
        return dumps(display_json(self.pages.text.token(token_id))).decode()

    def index_latent(self, search: SearchIndex, i: int, page: LatentPage) -> None:
        """Add latent i's terms (weights documented in generator.search)."""
        lat, text = self.data.latents, self.pages.text
        if page.explanation:
            search.add_text(i, page.explanation, 1.0)
        if lat.top_token_ids is not None and lat.top_token_sums is not None:
            total = max(float(lat.sum_act[i]), 1e-30)
            for t, s in zip(lat.top_token_ids[i], lat.top_token_sums[i], strict=True):
                if t >= 0:
                    search.add_text(i, text.plain(t), 0.4 + 0.6 * float(s) / total)
        for rank, t in enumerate(lat.logit_pos_ids[i]):
            search.add_text(i, text.plain(t), 0.5 - 0.03 * rank)
        for term, share in self.example_terms(i).items():
            search.add_term(i, term, 0.2 + 0.3 * share)

    def example_terms(self, i: int) -> dict[str, float]:
        """Terms of the active tokens in the top examples, with their share of the activation."""
        ex, cache = self.data.examples, self.token_terms
        mass: dict[str, float] = defaultdict(float)
        for row in self.pages.example_rows(i).tolist():
            if ex.kind[row] != EXAMPLE_TOP:
                continue
            acts = np.asarray(ex.acts[row])
            positions = np.flatnonzero(acts > 0)
            tokens = self.pages.example_tokens(row)[positions].tolist()
            for t, act in zip(tokens, acts[positions].tolist(), strict=True):
                terms = cache.get(t)
                if terms is None:
                    terms = cache[t] = terms_of(self.pages.text.plain(t))
                for term in terms:
                    mass[term] += act
        total = sum(mass.values()) or 1.0
        return {term: m / total for term, m in mass.items()}

    def write_token_index(self) -> int:
        """search/t<k>.js, the token index (format in generator.search); returns its shard
        count, 0 when the store has none."""
        tl = self.data.token_latents
        if tl is None:
            return 0
        text = self.pages.text
        files = token_index_files(tl.token, tl.latent, tl.sum_act, tl.count, text.plain,
                                  lambda t: display_text(text.token(t)), self.shard_bytes)
        for name, content in files.items():
            (self.out / "search" / name).write_bytes(content)
        return len(files)

    def write_table(self) -> dict[str, Any]:
        """search/<key>/<c>.js: the index table, one file per page per sort key (the format is
        in generator.search); returns the manifest the index page carries."""
        lat, meta = self.data.latents, self.data.meta
        density = lat.n_active / max(1, meta.n_tokens)
        columns: dict[str, list[Any]] = {
            "d": [float(f"{x:.3g}") for x in density],
            "x": self.pages.max3,
            "t": [", ".join(self.pages.top_token_labels(i, 3)) for i in range(lat.d_sae)],
            "e": [self.explanations.get(i, "") for i in range(lat.d_sae)],
        }
        if lat.abl_mean is not None and lat.abl_frac_helped is not None:
            columns["am"] = [_finite3(x) for x in lat.abl_mean]
            columns["af"] = [_finite3(x) for x in lat.abl_frac_helped]
        quality = self.pages.quality
        columns["q"] = quality.flags.tolist()
        for key, values in (("b", quality.bos_share), ("f", quality.first_share),
                            ("s", quality.top_token_share), ("c", quality.enc_dec_cos)):
            if values is not None:
                columns[key] = [_finite3(x) for x in values]
        manifest, files = table_files(columns, lat.d_sae, self.table_rows,
                                      flags=[list(f) for f in FLAGS])
        for path, content in files.items():
            target = self.out / "search" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return manifest

    def write_sequences(self) -> None:
        """seqs/t.js: the symbol table, `fbSeqTable([0, display, ...])`: every distinct token
        display of the kept sequences (after UTF-8 merging, so a symbol is exactly what the
        browser shows), most frequent first; symbol 0 is the BOS / document-boundary marker.
        seqs/<k>.js: `fbSeqs(k, {seq: code})`, SEQ_SHARD sequences per file, a code being one
        varint (generator.pages.varint) per position: its symbol. For "expand to the whole
        sequence"."""
        bos_id = self.data.meta.bos_id
        # only the sequences of shown examples (pages may show fewer than the store holds)
        shown = np.unique(self.pages.seq_rows_of(self.pages.shown))
        n = len(shown)
        seq_ids = self.data.seq_ids[shown].tolist()
        tokens = np.asarray(self.data.seq_tokens[shown])
        partial = self.pages._partial_vocab[tokens].any(axis=1) if n else np.zeros(0, bool)
        counts: dict[str, int] = defaultdict(int)
        # sequences of whole-UTF-8 tokens (nearly all): one key per distinct token id, counted
        # and coded with array operations
        whole = tokens[~partial]
        ids, id_counts = np.unique(whole[whole != bos_id], return_counts=True)
        key_of = {t: self.token_key(t) for t in ids.tolist()}
        for t, c in zip(ids.tolist(), id_counts.tolist(), strict=True):
            counts[key_of[t]] += c
        # the others: displays merged across tokens, one key per position
        merged: dict[int, list[str | None]] = {}
        for row in np.flatnonzero(partial).tolist():
            displays = self.pages.sequence_displays(int(shown[row]))
            keys = [None if t == bos_id else dumps(display_json(d)).decode()
                    for d, t in zip(displays, tokens[row].tolist(), strict=True)]
            for key in keys:
                if key is not None:
                    counts[key] += 1
            merged[row] = keys
        symbols = sorted(counts, key=lambda key: (-counts[key], key))
        number = {key: n for n, key in enumerate(symbols, 1)}
        symbol_of_id = np.zeros(int(tokens.max(initial=0)) + 2, dtype=np.int64)
        for t, key in key_of.items():
            symbol_of_id[t] = number[key]
        codes = symbol_of_id[np.where(tokens == bos_id, -1, tokens)]  # -1: the last slot, 0
        shards: dict[int, dict[str, str]] = defaultdict(dict)
        for row, seq in enumerate(seq_ids):
            values = ([0 if key is None else number[key] for key in merged[row]] if row in merged
                      else codes[row].tolist())
            shards[seq // SEQ_SHARD][str(seq)] = varint_code(values)
        folder = self.out / "seqs"
        folder.mkdir(parents=True, exist_ok=True)
        table = b"fbSeqTable([0" + b"".join(b"," + key.encode() for key in symbols) + b"]);\n"
        (folder / "t.js").write_bytes(table)
        for k, seqs in sorted(shards.items()):
            (folder / f"{k}.js").write_bytes(script_call("fbSeqs", k, seqs))


_FORKED_WRITER: _SiteWriter | None = None


def _worker_signals() -> None:
    """A forked worker inherits its parent's signal handlers (a build's SIGTERM clean-up, a test
    runner's): restore the defaults, so that Pool.terminate's SIGTERM ends it and Ctrl-C is the
    parent's business alone."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """On Linux, a worker is killed when its parent dies (even by kill -9), instead of writing
    pages into a staging folder nobody will use and printing broken-pipe tracebacks; the next
    build can then remove that folder at once."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own clean-up still applies
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _chunk_in_worker(job: tuple[str, int, int]) -> Any:
    assert _FORKED_WRITER is not None, "chunks run in workers forked by in_parallel"
    method, lo, hi = job
    return getattr(_FORKED_WRITER, method)(lo, hi)


def _finite3(x: float) -> float | None:
    return round3(float(x)) if math.isfinite(float(x)) else None


# ---------------------------------------------------------------------------------------------
# environment, static files


def make_env(assets: dict[str, str]) -> jinja2.Environment:
    """Jinja with autoescape ON for every template (HTML and SVG partials alike)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(resource_dir("templates")),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["url"] = _url_filter
    env.globals["asset"] = lambda name: assets[name]
    return env


def copy_static(source: Path, target: Path) -> dict[str, str]:
    """Copy static files with a content hash in the name; returns name -> site path."""
    target.mkdir(parents=True, exist_ok=True)
    assets = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:10]
        rel = path.relative_to(source).as_posix()
        stem, dot, ext = rel.rpartition(".")
        hashed = f"{stem}.{digest}.{ext}" if dot else f"{rel}.{digest}"
        (target / hashed).parent.mkdir(parents=True, exist_ok=True)
        (target / hashed).write_bytes(data)
        assets[rel] = f"static/{hashed}"
    return assets


__all__ = ["PageLinks", "RenderReport", "load_explanations", "relative_url", "render_site",
           "resource_dir"]
