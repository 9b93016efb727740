"""The site writer: every file of a site, from the page contexts (generator/site/builder.py,
generator/site/views.py) through the templates, into a fresh folder (the render stage makes it
atomic: generator/site/render.py). Latent pages and view pages are written by the page workers
(generator/site/pool.py); every file depends only on the store, so the output is the same byte
for byte whatever the number of workers.
"""

from __future__ import annotations

import os
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from generator.explain.labels import Label
from generator.files.outputs import SITE_MARKER
from generator.site.assets import copy_static, make_env, relative_url, resource_dir
from generator.site.builder import PageBuilder, site_info
from generator.site.cards import card_png
from generator.site.charts import finite3s, round3s
from generator.site.codec import script_json, varint_runs
from generator.site.contexts import DEFAULT_SHOWING, Showing, ViewerPage
from generator.site.packed import manifest, seq_shard_size, shard_bytes
from generator.site.packed import shard_size as packed_shard_size
from generator.site.pool import chunked, in_parallel, run_all
from generator.site.search import (
    Postings,
    SearchIndex,
    dumps,
    script_call,
    table_files,
    token_index_files,
)
from generator.site.terms import TermSource
from generator.site.tokens import display_json, display_text
from generator.site.views import VIEW_CHUNK, PromptPages, list_path, site_views
from generator.store.schema import StoreData

SEQ_SHARD = 64
"""sequences per seqs/<k>.js file."""
LATENT_CHUNK = 256
"""latents per unit of work of the page workers."""


@dataclass(frozen=True)
class PageLinks:
    """A page's absolute addresses (only with a site URL): what link previews read."""

    url: str
    """the page's own address: og:url and the canonical link."""
    image: str | None = None
    """its link card (cards/<id>.png): og:image and twitter:image."""
    image_alt: str = ""


class SiteWriter:
    """Writes one site into a fresh folder: pages, embeds, search index, table, sequences."""

    def __init__(self, data: StoreData, out: Path, explanations: dict[int, str], quiet: bool,
                 table_rows: int, shard_bytes: int, workers: int | None = None,
                 chunk: int = LATENT_CHUNK, showing: Showing = DEFAULT_SHOWING,
                 site_url: str | None = None, view_chunk: int = VIEW_CHUNK,
                 packed: bool = False, labels: dict[int, Label] | None = None) -> None:
        self.data, self.out, self.explanations, self.quiet = data, out, explanations, quiet
        self.site_url = site_url
        """the site root's public address ending in "/", or None: nothing absolute."""
        self.table_rows, self.shard_bytes = table_rows, shard_bytes
        self.workers = max(1, workers if workers is not None else len(os.sched_getaffinity(0)))
        self.chunk, self.view_chunk = chunk, view_chunk
        """latents, and prompt or corpus pages, per unit of work of the page workers."""
        self.showing = showing
        self.pages = PageBuilder(data, explanations, showing, labels)
        self.terms = TermSource(self.pages)
        self.packed = packed
        """write the packed site (generator/site/packed.py) instead of a page per latent."""
        self.shard = packed_shard_size(data.latents.d_sae)
        self.seq_shard = seq_shard_size(len(data.seq_ids)) if packed else SEQ_SHARD
        self._symbols: SeqSymbols | None = None

    def write_all(self) -> None:
        """The whole site."""
        self.setup()
        search = SearchIndex(self.shard_bytes)
        for postings in (self.packed_shards() if self.packed else self.latent_pages()):
            search.merge(postings)
        shards, _ = search.write(self.out / "search")
        token_shards = self.write_token_index()
        table = self.write_table()
        self.write_sequences()
        if self.pages.map is not None:
            self.pages.map.write(self.out)  # map/points.js, map/overview.png
        for view in site_views(self.data, self.pages, self.showing):
            self.write_view(view)  # prompts/ and corpus/ (when the store has them)
        if self.packed:
            self.render("latent.html", "latent.html", page=self.viewer_page())
        self.render("index.html", "index.html", page=self.pages.index_page(shards, table, token_shards),
                    links=PageLinks(self.site_url) if self.site_url else None)
        (self.out / SITE_MARKER).write_bytes(b"")

    def setup(self) -> None:
        """The static files, the template environment, what every page says of the site, and
        the folders: what any of the writing methods below needs (benchmarks call them alone)."""
        self.assets = copy_static(resource_dir("static"), self.out / "static")
        self.env = make_env(self.assets, self.packed)
        self.site = replace(site_info(self.data, self.showing, self.pages.shown),
                            packed=self.packed)
        folders = (("data", "search") if self.packed else
                   ("features", "search") + (("embed",) if self.showing.embed_files else ())
                   + (("cards",) if self.site_url else ()))
        for folder in folders:
            (self.out / folder).mkdir(parents=True, exist_ok=True)

    def latent_pages(self) -> Iterator[Postings]:
        """Write every latent's page and embed; yields the search postings chunk by chunk, in
        latent order (see in_parallel)."""
        d_sae = self.data.latents.d_sae
        yield from in_parallel(self.latent_chunk, chunked(d_sae, self.chunk), self.workers,
                               "pages", "latent", self.quiet)

    def packed_shards(self) -> Iterator[Postings]:
        """The packed site's data/<k>.bin, one shard per unit of work of the page workers;
        yields the search postings shard by shard, in latent order."""
        self.sequence_symbols()  # made once, before the workers fork
        yield from in_parallel(self.packed_chunk, chunked(self.data.latents.d_sae, self.shard),
                               self.workers, "shards", "latent", self.quiet)

    def packed_chunk(self, lo: int, hi: int) -> Postings:
        content, _ = shard_bytes(self.pages, lo, hi, self.sequence_symbols())
        (self.out / "data" / f"{lo // self.shard}.bin").write_bytes(content)
        return self.terms.postings(lo, hi)

    def viewer_page(self) -> ViewerPage:
        """latent.html's context: the manifest, what the viewer writes around a latent."""
        meta = self.data.meta
        info = manifest(self.pages, self.site, self.showing, self.shard, self.seq_shard)
        return ViewerPage(title=f"Latent viewer: {meta.sae} on {meta.model}",
                          description=f"{meta.sae} ({meta.hook_label}) on {meta.model}",
                          manifest=script_json(info), shard=self.shard)

    def write_view(self, pages: PromptPages) -> None:
        """<folder>/<n>.html for every page of a prompt or corpus view (generator.site.views),
        written by the page workers, then its list pages."""
        view = pages.view
        (self.out / view.folder).mkdir(parents=True, exist_ok=True)
        run_all(lambda lo, hi: self.view_pages(pages, lo, hi), chunked(len(pages.p), self.view_chunk),
                self.workers, view.folder, view.noun, self.quiet)
        for page in range(1, pages.list_pages + 1):
            path = list_path(view.folder, page)
            self.render(path, "prompts.html", page=pages.index(page), view=view,
                        links=self.links(path))

    def view_pages(self, pages: PromptPages, lo: int, hi: int) -> None:
        """Pages lo..hi of a view."""
        for n in range(lo, hi):
            path = f"{pages.view.folder}/{int(pages.ids[n])}.html"
            self.render(path, "prompt.html", page=pages.page(n), view=pages.view,
                        links=self.links(path))

    def links(self, path: str) -> PageLinks | None:
        """A page's absolute address, with a site URL only."""
        return PageLinks(self.site_url + path) if self.site_url else None

    def latent_chunk(self, lo: int, hi: int) -> Postings:
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
        return self.terms.postings(lo, hi)

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

    def write_token_index(self) -> int:
        """search/t<k>.js, the token index (format in generator.site.search); returns its shard
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
        in generator.site.search); returns the manifest the index page carries."""
        lat, meta = self.data.latents, self.data.meta
        density = lat.n_active / max(1, meta.n_tokens)
        columns: dict[str, list[Any]] = {
            "d": round3s(density),
            "x": self.pages.max3,
            "t": [", ".join(self.pages.top_token_labels(i, 3)) for i in range(lat.d_sae)],
            "e": [self.explanations.get(i, "") for i in range(lat.d_sae)],
        }
        for key, name, _ in self.pages.score_columns():  # explanation scores, where any
            columns[key] = [self.pages.score_value(i, name) for i in range(lat.d_sae)]
        if lat.abl_mean is not None and lat.abl_frac_helped is not None:
            columns["am"] = finite3s(lat.abl_mean)
            columns["af"] = finite3s(lat.abl_frac_helped)
        quality = self.pages.quality
        columns["q"] = quality.flags.tolist()
        for key, values in (("b", quality.bos_share), ("f", quality.first_share),
                            ("s", quality.top_token_share), ("c", quality.enc_dec_cos)):
            if values is not None:
                columns[key] = finite3s(values)
        manifest, files = table_files(columns, lat.d_sae, self.table_rows,
                                      flags=[list(f) for f in self.pages.flags],
                                      packed=self.packed)
        for path, content in files.items():
            target = self.out / "search" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return manifest

    def write_sequences(self) -> None:
        """seqs/t.js: the symbol table, `fbSeqTable([0, display, ...])` (`SeqSymbols`).
        seqs/<k>.js: `fbSeqs(k, {seq: code})`, `seq_shard` sequences per file (SEQ_SHARD; the
        packed site's manifest names its own), a code being one varint
        (generator.site.codec.varint) per position: its symbol. For "expand to the whole
        sequence". A packed site has seqs/t.bin and seqs/<k>.bin instead: zlib of the same
        JSON (the list, the object)."""
        symbols = self.sequence_symbols()
        shards: dict[int, dict[str, str]] = {}
        # a file's sequences, coded at once
        shard_of = np.asarray(symbols.seq_ids, dtype=np.int64) // self.seq_shard
        by_file = np.argsort(shard_of, kind="stable")
        files, first = np.unique(shard_of[by_file], return_index=True)
        bounds = np.append(first, len(shard_of)).tolist()
        for k, lo, hi in zip(files.tolist(), bounds[:-1], bounds[1:], strict=True):
            rows = by_file[lo:hi]
            codes = symbols.codes[rows]
            shards[k] = dict(zip([str(symbols.seq_ids[r]) for r in rows.tolist()],
                                 varint_runs(codes.ravel(), np.arange(1, len(rows) + 1)
                                             * codes.shape[1]), strict=True))
        folder = self.out / "seqs"
        folder.mkdir(parents=True, exist_ok=True)
        table = b"[0" + b"".join(b"," + key.encode() for key in symbols.symbols) + b"]"
        if self.packed:  # fetched and inflated by the viewer (generator/site/packed.py)
            (folder / "t.bin").write_bytes(zlib.compress(table, 9))
            for k, seqs in sorted(shards.items()):
                # level 6: 0.06% larger than 9 on the demo, 25% less time
                (folder / f"{k}.bin").write_bytes(zlib.compress(dumps(seqs), 6))
            return
        (folder / "t.js").write_bytes(b"fbSeqTable(" + table + b");\n")
        for k, seqs in sorted(shards.items()):
            (folder / f"{k}.js").write_bytes(script_call("fbSeqs", k, seqs))

    def sequence_symbols(self) -> SeqSymbols:
        """The shown sequences as symbols (made once; `SeqSymbols`)."""
        if self._symbols is None:
            self._symbols = self._make_symbols()
        return self._symbols

    def _make_symbols(self) -> SeqSymbols:
        bos_id = self.data.meta.bos_id
        # only the sequences of shown examples (pages may show fewer than the store holds)
        # (counted rather than np.unique'd: 40 M examples, 128 M tokens at 1,048,576 latents)
        shown = np.flatnonzero(np.bincount(self.pages.seq_rows_of(self.pages.shown),
                                           minlength=len(self.data.seq_ids)))
        n = len(shown)
        seq_ids = self.data.seq_ids[shown].tolist()
        tokens = np.asarray(self.data.seq_tokens[shown])
        partial = self.pages.partial_vocab[tokens].any(axis=1) if n else np.zeros(0, bool)
        counts: dict[str, int] = defaultdict(int)
        # sequences of whole-UTF-8 tokens (nearly all): one key per distinct token id, counted
        # and coded with array operations
        ids, id_counts = _token_counts(tokens[~partial].ravel(), bos_id, len(self.data.vocab))
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
        symbol_of_id = np.zeros(int(tokens.max(initial=0)) + 2, dtype=np.int32)
        for t, key in key_of.items():
            symbol_of_id[t] = number[key]
        codes = symbol_of_id[np.where(tokens == bos_id, -1, tokens)]  # -1: the last slot, 0
        for row, keys in merged.items():
            codes[row] = [0 if key is None else number[key] for key in keys]
        return SeqSymbols(symbols, shown, seq_ids, codes)


def _token_counts(tokens: np.ndarray, bos_id: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(tokens[tokens != bos_id], return_counts=True), by counting (token ids are
    below the vocabulary's size; anything else is left to np.unique). Memory: bincount's int64
    copy of the tokens (1 GB for the 128 M positions of a 1,048,576-latent site, as np.unique's
    sorted copy was) and 8 bytes x d_vocab; the time is a pass instead of a sort."""
    if tokens.size and (tokens.min() < 0 or tokens.max() >= max(vocab, 1)):
        return np.unique(tokens[tokens != bos_id], return_counts=True)
    per_id = np.bincount(tokens, minlength=vocab)
    if 0 <= bos_id < len(per_id):
        per_id[bos_id] = 0
    ids = np.flatnonzero(per_id)
    return ids, per_id[ids]


@dataclass(frozen=True)
class SeqSymbols:
    """The shown sequences' tokens as symbols: every distinct token display of the kept
    sequences (after UTF-8 merging, so a symbol is exactly what the browser shows), most
    frequent first, numbered from 1; symbol 0 is the BOS / document-boundary marker."""

    symbols: list[str]
    """the displays as JSON (generator.site.tokens.display_json): symbol n is symbols[n - 1]."""
    rows: np.ndarray
    """the rows, in the store's kept sequences, of the sequences some shown example points to
    (ascending)."""
    seq_ids: list[int]
    """their sequence ids."""
    codes: np.ndarray
    """[len(rows), ctx] int32: the symbol at every position (0.5 GB for the 1 M sequences of
    128 tokens of a 1,048,576-latent site; held by the parent and shared with the workers)."""
