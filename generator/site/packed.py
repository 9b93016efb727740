"""The packed site (format version 2): one viewer page, `latent.html#<id>`, draws any latent from
compressed shards, for SAEs whose one-page-per-latent site would not fit GitHub Pages (262,144
to 1,048,576 latents; `render_site(..., packed=True)`, chosen by itself when pages would pass
1 GB: generator.site.render.wants_packed).

    latent.html           the viewer (templates/latent.html, static/viewer.js): the manifest
                          inline as JSON (#fb-packed: `manifest`); the permalink of latent i
                          is latent.html#i,
                          its card latent.html?embed#i
    data/<k>.bin          latents [k * shard, (k + 1) * shard) (`shard_size`): zlib (RFC 1950) of UTF-8 JSON,
                          their records (below) as columns, {key: [each latent's value, null
                          where it has none]} (10% smaller than a list of records: like values
                          sit together for deflate); read with fetch() and the browser's
                          DecompressionStream("deflate")
    seqs/t.bin, seqs/<k>.bin  the shown sequences as symbols (generator.site.writer.SeqSymbols),
                          zlib'd JSON: the symbol table (the first paint needs it) and
                          `seq_shard` sequences per file, what "expand to the whole sequence"
                          loads

A record holds what the latent page (templates/feature.html) shows, from the same page context
(generator.site.builder.PageBuilder.latent_page), numbers already formatted as the page writes
them, so that a latent reads the same either way; keys are left out where the page shows
nothing:

    s     [density, zero share, max, mean when active, active positions]
    t     the page title;  x  the explanation;  dead  1 when the latent never fired
    lb    a generated explanation's [model, [[score name, value, tooltip], ...]]
    q     its quality badges [[key, text, title], ...];  qf  figures [[what, value], ...]
    h, hx the activation histogram's counts and its upper end (float32, shortest digits)
    lh, lx  the logit histogram's counts and [lo, hi (shortest), lo, hi (3 digits), the first
          bin drawn as promoting]
    lp, ln  promoted / suppressed tokens [[display, value], ...] (display: the token as
          generator.site.tokens.display_json writes it)
    m, e  the example data of the page's #fb-data (generator.site.codec: the latent's max and
          one code per example)
    w     per example (space-separated), the symbols of its window's tokens, one varint each
    v     per example, the value its line shows;  top  the example numbers of the top
          examples;  nt  top examples in the store
    g     interval groups in page order [[j, lo, hi, count, alpha, [example numbers]], ...]
    a     ablation [mean, share helped, available (0 / 1)]
    tt    top tokens [[display, total, count], ...]
    nc, na  decoder-cosine and co-activation neighbours [[latent, value, label], ...]
    mp    the map spot [left, top, x, y, [[latent, distance, label], ...]]

The activation levels, Δloss values and their quantization are the example codes' (codec.py:
activation to 1/1000 of the latent's max, Δloss to 0.001 nats, |Δloss| < 0.01 left out).
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from generator.site.builder import PageBuilder
from generator.site.charts import _shortest, interval_alphas, sig
from generator.site.contexts import ExampleView, LatentPage, NeighbourRow, Showing, SiteInfo
from generator.site.search import dumps
from generator.site.shardcodes import shard_examples, window_codes

PACKED_FORMAT = 2
MAX_SHARD_FILES = 16_384
"""latents per shard: the smallest power of two from 64 that keeps the shard files at most this
many (64 up to 1,048,576 latents: a shard of the demo's latents is ~200 KB, what a first paint
loads besides ~55 KB of page and scripts)."""
ZLIB_LEVEL = 5
"""the shards' deflate level: on the tiled demo 0.5% larger than zlib's default (6) and 25% less
of its time (level 4: +1.9%, 38% less; 9: -0.5%, 2.3x the time)."""
MAX_SEQ_FILES = 512
"""sequences per seqs/<k>.bin: the smallest power of two from 64 that keeps them at most this
many files (only "expand to the whole sequence" loads one)."""


def shard_size(d_sae: int) -> int:
    """Latents per data/<k>.bin file."""
    return _per_file(d_sae, MAX_SHARD_FILES)


def seq_shard_size(n_seqs: int) -> int:
    """Sequences per seqs/<k>.bin file."""
    return _per_file(n_seqs, MAX_SEQ_FILES)


def _per_file(n: int, max_files: int) -> int:
    """The smallest power of two from 64 that keeps n items in at most max_files files."""
    size = 64
    while size * max_files < n:
        size *= 2
    return size


def manifest(pages: PageBuilder, site: SiteInfo, show: Showing, shard: int,
             seq_shard: int) -> dict[str, Any]:
    """latent.html's #fb-packed: the format version, d_sae, latents per shard, sequences per
    seqs/ file, the intervals' colours, how much of each latent the site shows and what every
    latent page says of the site (its text around a latent)."""
    lat = pages.lat
    return {"v": PACKED_FORMAT, "n": int(lat.d_sae), "shard": shard, "seq_shard": seq_shard,
            "alphas": list(interval_alphas(int(lat.interval_counts.shape[1]))),
            "show": {"top": show.top, "per_interval": show.per_interval, "logits": show.logits,
                     "logit_chart": show.logit_chart},
            "site": {"n_tokens": site.n_tokens, "logit_direction": site.logit_direction,
                     "ln_folded": site.ln_folded, "has_bos": site.has_bos,
                     "coact_method": site.coact_method,
                     "samples_per_interval": site.samples_per_interval}}


def shard_bytes(pages: PageBuilder, lo: int, hi: int,
                symbols: Any) -> tuple[bytes, list[LatentPage]]:
    """The compressed shard of latents [lo, hi), and their page contexts (tests compare them).
    `symbols`: the shown sequences' symbols (generator.site.writer.SeqSymbols)."""
    examples = shard_examples(pages, lo, hi)
    pages_out = [pages.latent_page(i, html=False, examples=ex)
                 for i, ex in zip(range(lo, hi), examples, strict=True)]
    shown = [sorted(page.top_examples + [ex for g in page.intervals for ex in g.examples],
                    key=lambda ex: ex.n) for page in pages_out]
    windows = iter(window_codes(symbols, [ex.window for views in shown for ex in views]))
    records = [latent_record(pages, page, views, [next(windows) for _ in views])
               for page, views in zip(pages_out, shown, strict=True)]
    return zlib.compress(dumps(columns(records)), ZLIB_LEVEL), pages_out


def columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Records as a shard's columns (module docstring): null stands for a missing key, so a
    record must never hold None (the reader would drop it)."""
    assert all(None not in rec.values() for rec in records), "a record holds None"
    keys = sorted({key for rec in records for key in rec})
    return {key: [rec.get(key) for rec in records] for key in keys}


def latent_record(pages: PageBuilder, page: LatentPage, examples: list[ExampleView],
                  windows: list[str]) -> dict[str, Any]:
    """Latent i's record (module docstring): `examples`, the page's examples by number, and
    `windows`, their window symbols (shardcodes.window_codes)."""
    i, lat = page.id, pages.lat
    rec: dict[str, Any] = {"s": [page.density, page.zero_frac, page.max, page.mean, page.n_active],
                           "t": page.title}
    if page.explanation:
        rec["x"] = page.explanation
    if page.label is not None:
        rec["lb"] = [page.label.model, [list(s) for s in page.label.scores]]
    if page.dead:
        rec["dead"] = 1
    if page.quality is not None:
        if page.quality.badges:
            rec["q"] = [[b.key, b.text, b.title] for b in page.quality.badges]
        if page.quality.figures:
            rec["qf"] = [list(f) for f in page.quality.figures]
    if not page.dead:
        rec["h"] = [int(c) for c in lat.hist[i]]
        rec["hx"] = _shortest(float(lat.max_act[i]))
    lo, hi = float(lat.logit_lo[i]), float(lat.logit_hi[i])
    n = len(lat.logit_hist[i])
    first_pos = next((k for k in range(n) if lo + (k + 0.5) * (hi - lo) / max(1, n) >= 0), n)
    rec["lh"] = [int(c) for c in lat.logit_hist[i]]
    rec["lx"] = [_shortest(lo), _shortest(hi), sig(lo), sig(hi), first_pos]
    rec["lp"] = [[pages.display(t), r.value]
                 for t, r in zip(lat.logit_pos_ids[i].tolist(), page.logit_pos, strict=True)]
    rec["ln"] = [[pages.display(t), r.value]
                 for t, r in zip(lat.logit_neg_ids[i].tolist(), page.logit_neg, strict=True)]
    if examples:
        assert page.data is not None
        rec["m"], rec["e"] = page.data["m"], page.data["e"]
        rec["v"] = [ex.value for ex in examples]
        rec["w"] = " ".join(windows)
    rec["top"] = [ex.n for ex in page.top_examples]
    rec["nt"] = page.n_top
    rec["g"] = [[g.j, g.lo, g.hi, g.count, g.alpha, [ex.n for ex in g.examples]]
                for g in page.intervals]
    if page.ablation is not None:
        a = page.ablation
        rec["a"] = [a.mean, a.frac_helped, int(a.available)]
    if page.top_tokens is not None:
        ids = [int(t) for t in lat.top_token_ids[i] if t >= 0]  # type: ignore[index]
        rec["tt"] = [[pages.display(t), r.total, r.count]
                     for t, r in zip(ids, page.top_tokens, strict=True)]
    if page.nb_cos is not None:
        rec["nc"] = _neighbours(page.nb_cos)
    if page.nb_coact is not None:
        rec["na"] = _neighbours(page.nb_coact)
    if page.map is not None:
        m = page.map
        rec["mp"] = [m.left, m.top, m.x, m.y, _neighbours(m.neighbours)]
    return rec


def _neighbours(rows: list[NeighbourRow]) -> list[list[Any]]:
    return [[r.latent, r.value, r.label] for r in rows]


def read_shard(data: bytes) -> list[dict[str, Any]]:
    """A shard's records (the reference reader: tests and notebooks)."""
    cols = orjson.loads(zlib.decompress(data))
    return [{key: col[j] for key, col in cols.items() if col[j] is not None}
            for j in range(len(cols["s"]))]

