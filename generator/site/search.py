"""Client-side search data: the latent table, the sharded term index and the token index
(format version 4).

Everything here ships as classic scripts that call a global function defined by
`static/table.js` or `static/search.js`, because `fetch()` of local JSON is blocked on `file://`.
JSON inside is written with sorted keys so that the same store gives byte-identical files.

Latent table: `search/<key>/<c>.js`, one file per table page, for every sort key
    fbRows("<key>", c, [[latent, d, x, t, e, am, af, q, b, f, s, c], ...])
    Rows at positions [c * rows, (c + 1) * rows) of the table sorted by `key`. Columns: latent id,
    density and max activation (3 significant digits), top-token label, explanation ("" when
    none), ablation mean Δloss and fraction helped (null when not computed; both columns are
    left out of every row when the build has no ablation), then the quality signals
    (generator.compute.quality): q the flags bitmask, b / f the shares of the latent's activation at
    BOS / first positions, s its top token's share, c its encoder-decoder cosine (3 significant
    digits, null where undefined; each left out when the store lacks it). The index page
    carries the manifest as JSON in `<script id=fb-table>`: {"v", "n": d_sae, "rows", "cols":
    the column names after the id, "sorts": {key: n_valid}, "flags": [[bit, key, badge,
    meaning], ...]}. Each key's files hold its natural order: `id` ascending,
    `e` ascending (UTF-16 code units, as JavaScript compares), every other key descending, ties
    by ascending id; the n_valid rows with a value come first, then the rest (null or "") in id
    order. The opposite direction reads the first n_valid positions backwards and keeps the rest
    last. A key is sortable when it is in `sorts` (`e` only when some latent is explained), so no
    page ever loads more than two table files, and a search result's label comes from the `id`
    file of its latent: the index page loads no table data up front, whatever d_sae is.

Packed table (the packed site, generator/site/packed.py; the manifest then has "packed": {"file",
    "order", "head"}): the rows are stored once, `search/id/<c>.bin` (zlib of the JSON list of
    rows, read with fetch() as the packed site's shards are; `file` rows a file, in id order);
    every other sort key has its order, `search/<key>/o<c>.js`
    (fbOrder("<key>", c, "<4 B64 digits per id, most significant first>"), `order` positions a
    file), and the rows of its first `head` and last `head` valid positions,
    `search/<key>/h.js` (fbRows("<key>", "h", rows)), which are the first pages in either
    direction. A page elsewhere reads its ids from the order files and its rows from the id files.

Flags per sort order: `search/<key>/q.js`, for every sort key when the table has flags
    fbFlags("<key>", "<one B64 digit per row>")
    the q column of every row in that key's file order (digit value = the flags bitmask, < 32),
    so that a filter on the flags finds the file positions of the rows that pass without
    loading the rows (d_sae bytes per key); the page then loads only the files of the rows it
    shows.

Term index: `search/s<k>.js`, k in [0, n_shards)
    fbIndex(k, {"<term>": [latent, score, latent, score, ...], ...})
    - terms: NFKC-normalised, lower-cased; the words of a text (runs of letters, digits and `_`)
      plus its whitespace-separated pieces that contain no word character (so `(` or `==` are
      findable in code corpora);
    - sources and weights (score = round(1000 * weight), the best source wins per latent):
      explanation words 1.0; top tokens 0.4 + 0.6 * (share of the latent's total activation);
      top positive logit tokens 0.5 - 0.03 * rank; words of active tokens in top examples
      0.2 + 0.3 * (share of the top examples' activation); a store's empty token slots (id -1)
      have no words, and a non-finite weight (a damaged store) scores 1;
    - postings: sorted by score descending then latent ascending, at most MAX_POSTINGS per term;
    - sharding: a term lives in shard fnv1a32(utf8(first two code points of the term)) mod
      n_shards, so a query term of two or more characters finds all terms it prefixes in a single
      shard; n_shards is a power of two chosen so shards stay near SHARD_TARGET_BYTES. The page
      that searches carries `data-shards` and `data-search-v` attributes.
    Latent ids are matched by the client directly (no postings needed).

Token index: `search/t<k>.js`, k in [0, n_token_shards)
    fbTokens(k, {"<key>": {"v": [variant, ...], "l": [latent, variant, mean, count, ...]}, ...})
    - key: a corpus token's text, NFKC-normalised, lower-cased and stripped of surrounding
      whitespace (whitespace-only tokens have none); the tokens sharing a key (" self", "self",
      "Self") are its variants, shown as their escaped display;
    - l: the latents that fire most on the key's tokens over the whole corpus (the store's
      TokenLatents: total activation on the token), best first by total activation, ties by
      token id then latent; each latent once, on the variant where its total is largest; at
      most TOKEN_LIST; `mean` is the latent's mean activation where it fired on that token (3
      significant digits), `count` how many times it did;
    - sharding as the term index (shard_of the key), n_token_shards a power of two near
      SHARD_TARGET_BYTES per shard; the search input carries `data-token-shards` (0: none).
    The client looks a query up as one key (the whole query, trimmed), so a token typed as it
    appears in the corpus finds the latents that fire on it.
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

SEARCH_FORMAT = 4
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
"""digits of the flag strings, and of the example codes and seqs/ (generator.site.codec): JSON-
and HTML-safe, never `<`, `>`, `&`."""
MAX_POSTINGS = 200
TOKEN_LIST = 16
"""latents listed per token key."""
SHARD_TARGET_BYTES = 64 * 1024
_WORD = re.compile(r"\w+")
_HAS_WORD = re.compile(r"\w")


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def terms_of(text: str) -> list[str]:
    """Search terms of a text, in first-seen order (the client applies the same rule to queries)."""
    text = normalise(text)
    found = _WORD.findall(text) + [p for p in text.split() if not _HAS_WORD.search(p)]
    return list(dict.fromkeys(found))


def fnv1a32(data: bytes) -> int:
    """32-bit FNV-1a: tiny, and identical in JavaScript (Math.imul), which picks the shard."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def shard_count(size: int, target_bytes: int) -> int:
    """Shards for an index of about `size` bytes: the smallest power of two that keeps each
    shard at or under `target_bytes` (the term and token indexes alike)."""
    n = 1
    while n * target_bytes < size:
        n *= 2
    return n


def shard_of(term: str, n_shards: int) -> int:
    return fnv1a32(term[:2].encode("utf-8")) % n_shards


class Postings(NamedTuple):
    """A chunk's postings, best first within each term: what a page worker hands back
    (generator.site.terms) and SearchIndex merges. Arrays, so that they pickle as bytes."""

    terms: list[str]
    """the terms; `term` indexes them."""
    term: np.ndarray
    """[P] int64: each posting's term, ascending."""
    latent: np.ndarray
    """[P] int64: its latent."""
    score: np.ndarray
    """[P] int64: its score, round(1000 * weight) in 1..1000."""


def rank_postings(terms: list[str], term: np.ndarray, latent: np.ndarray,
                  weight: np.ndarray) -> Postings:
    """(term, latent, weight) triples as Postings: per (term, latent) the best source's score,
    each term's postings by score descending then latent ascending, at most MAX_POSTINGS."""
    # a non-finite weight (a damaged store's NaN sum) counts as the lowest score, not garbage
    weight = np.nan_to_num(np.asarray(weight, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    score = np.maximum(1, np.round(1000 * np.minimum(weight, 1.0))).astype(np.int64)
    return _cut(terms, np.asarray(term, np.int64), np.asarray(latent, np.int64), score)


def _cut(terms: list[str], term: np.ndarray, latent: np.ndarray, score: np.ndarray,
         dedup: bool = True) -> Postings:
    """Rank and cut postings; with `dedup`, a (term, latent) pair that repeats keeps its best
    score. Sorted as one int64 key (term, 1000 - score, latent) where it fits, which is ~3x
    faster than a lexsort."""
    span = int(latent.max(initial=0)) + 1
    if (int(term.max(initial=0)) + 1) * 1001 * span < 2**63:
        key = np.sort((term * 1001 + (1000 - score)) * span + latent)
        term, rest = np.divmod(key, 1001 * span)
        score, latent = 1000 - rest // span, rest % span
    else:
        order = np.lexsort((latent, -score, term))
        term, latent, score = term[order], latent[order], score[order]
    if dedup and len(term):  # a repeated (term, latent) pair keeps its first (best) posting
        keep = np.zeros(len(term), bool)
        keep[np.unique(term * span + latent, return_index=True)[1]] = True
        term, latent, score = term[keep], latent[keep], score[keep]
    first = np.searchsorted(term, term)  # each posting's rank within its term
    keep = np.arange(len(term)) - first < MAX_POSTINGS
    return Postings(terms, term[keep], latent[keep], score[keep])


class SearchIndex:
    """Merges the page workers' postings and writes the sharded index.

    Chunks hold disjoint latents; the parent keeps each term's best MAX_POSTINGS, cutting its
    arrays whenever the postings since the last cut outnumber COMPACT_FROM and the kept ones
    (so each posting is sorted about twice). Memory: 24 bytes a kept posting, at most
    MAX_POSTINGS per distinct term, and as many pending (the uncut index holds ~80 postings a
    latent: 80 M at 1,048,576 latents)."""

    COMPACT_FROM = 1_000_000

    def __init__(self, target_bytes: int = SHARD_TARGET_BYTES) -> None:
        self.target_bytes = target_bytes
        self.ids: dict[str, int] = {}
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending = 0
        self.kept = 0

    def merge(self, postings: Postings) -> None:
        """Add a chunk's postings (of latents no other merged chunk has)."""
        ids = np.array([self.ids.setdefault(t, len(self.ids)) for t in postings.terms] or [0],
                       dtype=np.int64)
        self.parts.append((ids[postings.term], postings.latent, postings.score))
        self.pending += len(postings.term)
        if self.pending > max(self.COMPACT_FROM, self.kept):
            self.parts = [self._merged()]
            self.pending, self.kept = 0, len(self.parts[0][0])

    def _merged(self, final: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kept and pending postings, ranked and cut (`final`: also a (term, latent) pair
        that two chunks both sent keeps one posting, its best)."""
        if not self.parts:
            return (np.zeros(0, np.int64),) * 3
        term, latent, score = (np.concatenate(col) for col in zip(*self.parts, strict=True))
        cut = _cut([], term, latent, score, dedup=final)
        return cut.term, cut.latent, cut.score

    def ranked(self) -> dict[str, list[tuple[int, int]]]:
        """Every term's postings as (latent, score), best first, cut."""
        term, latent, score = self._merged(final=True)
        names = list(self.ids)
        bounds = np.searchsorted(term, np.arange(len(names) + 1)).tolist()
        latents, scores = latent.tolist(), score.tolist()
        return {names[t]: list(zip(latents[bounds[t]:bounds[t + 1]],
                                   scores[bounds[t]:bounds[t + 1]], strict=True))
                for t in range(len(names)) if bounds[t] < bounds[t + 1]}

    def write(self, folder: Path) -> tuple[int, list[Path]]:
        """Write every shard (empty ones too, so any query's script exists); returns the count."""
        ranked = self.ranked()
        size = sum(len(t) + 8 + 10 * len(p) for t, p in ranked.items())
        n_shards = shard_count(size, self.target_bytes)
        shards: list[dict[str, list[int]]] = [{} for _ in range(n_shards)]
        for term, pairs in ranked.items():
            shards[shard_of(term, n_shards)][term] = [x for pair in pairs for x in pair]
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, shard in enumerate(shards):
            path = folder / f"s{k}.js"
            path.write_bytes(script_call("fbIndex", k, shard))
            paths.append(path)
        return n_shards, paths


JS_SPACE = ("\t\n\x0b\x0c\r \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
            + "\u2028\u2029\u202f\u205f\u3000\ufeff")
"""what JavaScript's String.prototype.trim removes (Python's strip() also removes \x1c-\x1f and
\x85, and keeps \ufeff)."""


def token_key(text: str) -> str:
    """The token index's key of a token's text: NFKC, lower case, stripped as the client's
    `trim()` strips a query."""
    return normalise(text).strip(JS_SPACE)


def token_index_files(token: np.ndarray, latent: np.ndarray, sum_act: np.ndarray,
                      count: np.ndarray, text: Callable[[int], str], display: Callable[[int], str],
                      target_bytes: int = SHARD_TARGET_BYTES) -> dict[str, bytes]:
    """search/t<k>.js files of the token index (module docstring) from the store's
    TokenLatents columns; `text` is a token's decoded text, `display` its escaped display."""
    entries: dict[str, list[tuple[float, int, int, float, int]]] = defaultdict(list)
    for row, t in enumerate(token.tolist()):
        key = token_key(text(t))
        if not key:
            continue
        for i, s, c in zip(latent[row].tolist(), sum_act[row].tolist(), count[row].tolist(),
                           strict=True):
            if i >= 0 and c > 0:
                entries[key].append((-s, t, i, s / c, c))
    keys: dict[str, dict[str, list[Any]]] = {}
    for key, found in entries.items():
        found.sort()
        best: dict[int, tuple[float, int, int, float, int]] = {}  # a latent once, on its best
        for e in found:                                            # variant
            best.setdefault(e[2], e)
        found = sorted(best.values())[:TOKEN_LIST]
        variants = sorted({t for _, t, _, _, _ in found})
        keys[key] = {"v": [display(t) for t in variants],
                     "l": [x for _, t, i, mean, c in found
                           for x in (i, variants.index(t), float(f"{mean:.3g}"), c)]}
    size = sum(len(k) + 30 + 20 * len(v["l"]) // 4 for k, v in keys.items())
    n = shard_count(size, target_bytes)
    shards: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in keys.items():
        shards[shard_of(key, n)][key] = value
    return {f"t{k}.js": script_call("fbTokens", k, shard) for k, shard in enumerate(shards)}


def script_call(function: str, *args: object) -> bytes:
    """`function(arg, ...);` with JSON arguments: a data file loadable by `<script src>`."""
    body = b",".join(dumps(a) for a in args)
    return function.encode() + b"(" + body + b");\n"


def dumps(value: object) -> bytes:
    """Deterministic compact JSON, safe inside scripts (no raw U+2028/U+2029 line separators)."""
    raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return raw.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")


TABLE_KEYS = {"id": False, "d": True, "x": True, "e": False, "sd": True, "sf": True, "am": True,
              "af": True, "b": True, "f": True, "s": True, "c": True}
"""sort keys of the table and whether their natural order is descending."""


def table_files(columns: dict[str, list[Any]], n: int, rows_per_file: int,
                flags: list[list[Any]] | None = None,
                packed: bool = False) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The table manifest and its files (site path -> bytes); see the module docstring.
    `packed`: the packed site's table (PACKED_TABLE), rows stored once."""
    names = list(columns)
    rows = list(map(list, zip(range(n), *(columns[k] for k in names), strict=True)))
    sorts: dict[str, int] = {}
    files: dict[str, bytes] = {}
    for key, descending in TABLE_KEYS.items():
        if key != "id" and key not in columns:
            continue
        values: list[Any] = list(range(n)) if key == "id" else columns[key]
        valid = [i for i, v in enumerate(values) if v is not None and v != ""]
        if key == "e" and not valid:
            continue
        valid = _sorted_valid(values, valid, descending)
        rest = [i for i, v in enumerate(values) if v is None or v == ""]
        order = valid + rest
        sorts[key] = len(valid)
        if packed:
            files.update(_packed_key(key, order, len(valid), rows))
        else:
            for c in range(0, max(1, math.ceil(n / rows_per_file))):
                chunk = [rows[i] for i in order[c * rows_per_file:(c + 1) * rows_per_file]]
                files[f"{key}/{c}.js"] = script_call("fbRows", key, c, chunk)
        if "q" in columns:
            files[f"{key}/q.js"] = script_call("fbFlags", key,
                                               _b64_digits(np.asarray(columns["q"], dtype=np.int64)[order]))
    manifest = {"v": SEARCH_FORMAT, "n": n, "rows": rows_per_file, "cols": names,
                "sorts": sorts}
    if packed:
        manifest["packed"] = dict(PACKED_TABLE)
    if flags is not None:
        manifest["flags"] = flags
    return manifest, files


PACKED_TABLE = {"file": 1024, "order": 16384, "head": 1000}
"""The packed site's table: `file` rows per id/<c>.js, `order` ids per <key>/o<c>.js, `head`
rows at each end of a sort's valid part in <key>/h.js."""


def _packed_key(key: str, order: list[int], n_valid: int, rows: list[list[Any]]) -> dict[str, bytes]:
    """One sort key's files of the packed table: the rows themselves for `id` (in id order, so
    stored once), else the order (ids by position, 4 B64 digits each) and the head rows."""
    files: dict[str, bytes] = {}
    if key == "id":
        per = PACKED_TABLE["file"]
        for c in range(0, max(1, math.ceil(len(rows) / per))):
            files[f"id/{c}.bin"] = zlib.compress(dumps(rows[c * per:(c + 1) * per]))
        return files
    per, head = PACKED_TABLE["order"], PACKED_TABLE["head"]
    for c in range(0, max(1, math.ceil(len(order) / per))):
        files[f"{key}/o{c}.js"] = script_call("fbOrder", key, c,
                                              _fixed4s(order[c * per:(c + 1) * per]))
    ends = order[:head] + order[max(head, n_valid - head):n_valid]
    files[f"{key}/h.js"] = script_call("fbRows", key, "h", [rows[i] for i in ends])
    return files


_B64_BYTES = np.frombuffer(B64.encode(), dtype=np.uint8)


def _b64_digits(values: np.ndarray) -> str:
    """One B64 digit per value (each < 64)."""
    return _B64_BYTES[values].tobytes().decode()


def _fixed4s(ids: list[int]) -> str:
    """Each latent id (< 2**24) as 4 B64 digits, most significant first."""
    array = np.asarray(ids, dtype=np.int64).reshape(-1, 1)
    return _b64_digits((array >> np.array([18, 12, 6, 0])) & 63)


def _sorted_valid(values: list[Any], valid: list[int], descending: bool) -> list[int]:
    """`valid` (ascending ids) sorted by (_sort_value of their value, id). Finite numbers are
    sorted by a stable argsort, which orders them the same way (ties by position, and so by
    id); anything else (text, NaN) by Python's sort."""
    numbers = [values[i] for i in valid]
    if all(type(v) in (int, float) for v in numbers):
        array = np.array(numbers, dtype=np.float64)
        if np.all(np.isfinite(array)) and np.all(np.abs(array) < 2.0 ** 53):
            ranked = np.argsort(-array if descending else array, kind="stable")
            return np.asarray(valid, dtype=np.int64)[ranked].tolist()
    return sorted(valid, key=lambda i: (_sort_value(values[i], descending), i))


def _sort_value(value: Any, descending: bool) -> Any:
    if isinstance(value, str):
        # JavaScript compares strings by UTF-16 code units; big-endian bytes sort the same way
        return value.encode("utf-16-be")
    return -value if descending else value
