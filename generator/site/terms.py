"""The term index's postings of a run of latents (format and weights: generator/site/search.py),
made for a whole chunk of latents at once: the page workers' search work (writer.py).

The heavy source is the words of the active tokens in each latent's top examples: every active
position of ~20 examples a latent. Each position becomes its token's words with array
operations (only the chunk's distinct tokens reach Python, where a token's words are made once
and cached) and the activations are summed per (latent, word), in the order the examples are
read, so every sum is the one a loop over the positions makes, to the last bit.

Memory: the chunk's top examples as [E, ctx] arrays (E = chunk latents x top examples, ~1,300 at
64 latents x 20; x ctx 128 x 8 bytes: ~1.3 MB each), and the per-token word cache (one list per
distinct token seen, at most d_vocab).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generator.site.search import Postings, rank_postings, terms_of


class TermSource:
    """What the term index reads of every latent; `pages` is the site's PageBuilder."""

    def __init__(self, pages: Any) -> None:
        self.pages = pages
        self._words: dict[int, list[str]] = {}
        self.number: dict[str, int] = {}
        """every term this process has met, numbered in that order (each worker its own: a
        chunk's postings name their terms by text, so the numbers never leave it)."""
        self.terms: list[str] = []
        self._of_token: dict[int, list[int]] = {}
        """a token's term numbers, made once per process (per chunk was 5% of a shard)."""

    def term_id(self, term: str) -> int:
        n = self.number.get(term)
        if n is None:
            n = self.number[term] = len(self.terms)
            self.terms.append(term)
        return n

    def token_terms(self, token: int) -> list[int]:
        ids = self._of_token.get(token)
        if ids is None:
            ids = self._of_token[token] = [self.term_id(t) for t in self.words(token)]
        return ids

    def words(self, token: int) -> list[str]:
        """A token's search terms (terms_of its plain text), made once per token."""
        words = self._words.get(token)
        if words is None:
            words = self._words[token] = terms_of(self.pages.text.plain(token))
        return words

    def postings(self, lo: int, hi: int) -> Postings:
        """The term index's postings of latents [lo, hi) (weights: generator/site/search.py)."""
        lat = self.pages.lat
        chunk = _Triples(self)
        for i in range(lo, hi):
            explanation = self.pages.explanations.get(i)
            if explanation:
                chunk.add_text(i, explanation, 1.0)
        latents = np.arange(lo, hi)
        if lat.top_token_ids is not None and lat.top_token_sums is not None:
            total = np.maximum(np.asarray(lat.sum_act[lo:hi], np.float64), 1e-30)[:, None]
            weight = 0.4 + 0.6 * np.asarray(lat.top_token_sums[lo:hi], np.float64) / total
            ids = np.asarray(lat.top_token_ids[lo:hi], np.int64)
            chunk.add_tokens(np.broadcast_to(latents[:, None], ids.shape), ids, weight)
        ids = np.asarray(lat.logit_pos_ids[lo:hi], np.int64)
        chunk.add_tokens(np.broadcast_to(latents[:, None], ids.shape), ids,
                         np.broadcast_to(0.5 - 0.03 * np.arange(ids.shape[1]), ids.shape))
        self.add_example_terms(chunk, lo, hi)
        return chunk.ranked()

    def add_example_terms(self, chunk: _Triples, lo: int, hi: int) -> None:
        """Per latent of [lo, hi): the words of the active tokens in its top examples, weighted
        by their share of the activation summed over every (word, position) pair."""
        pages, ex = self.pages, self.pages.data.examples
        rows_of = [rows[pages.is_top[rows]] for rows in map(pages.example_rows, range(lo, hi))]
        if not sum(len(rows) for rows in rows_of):
            return
        rows = np.concatenate(rows_of)
        which = np.repeat(np.arange(lo, hi), [len(r) for r in rows_of])
        acts = np.asarray(ex.acts[rows], dtype=np.float64)
        tokens = np.asarray(pages.data.seq_tokens[pages.seq_rows_of(rows)], dtype=np.int64)
        r, p = np.nonzero(acts > 0)
        latent, term, mass = chunk.expand(which[r], tokens[r, p], acts[r, p])
        # sum per (latent, term) in reading order (bincount adds its inputs in order), then each
        # latent's total over its terms in the order they were first read, as a loop would
        span = len(self.terms) + 1
        pairs, first, inverse = np.unique(latent * span + term, return_index=True,
                                          return_inverse=True)
        sums = np.bincount(inverse.ravel(), weights=mass, minlength=len(pairs))
        order = np.argsort(first, kind="stable")
        pairs, sums = pairs[order], sums[order]
        latent, term = pairs // span, pairs % span
        totals = np.bincount(latent - lo, weights=sums, minlength=hi - lo)
        chunk.add(latent, term, 0.2 + 0.3 * (sums / totals[latent - lo]))


class _Triples:
    """A chunk's (latent, term, weight) triples, terms numbered by the TermSource."""

    def __init__(self, source: TermSource) -> None:
        self.source = source
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, latent: np.ndarray, term: np.ndarray, weight: np.ndarray) -> None:
        self.parts.append((np.asarray(latent, np.int64), np.asarray(term, np.int64),
                           np.asarray(weight, np.float64)))

    def add_text(self, latent: int, text: str, weight: float) -> None:
        ids = [self.source.term_id(t) for t in terms_of(text)]
        self.add(np.full(len(ids), latent), np.array(ids, np.int64), np.full(len(ids), weight))

    def add_tokens(self, latent: np.ndarray, token: np.ndarray, weight: np.ndarray) -> None:
        """Every word of each token (ids < 0 are a store's empty slots: no words)."""
        keep = token >= 0
        self.add(*self.expand(latent[keep], token[keep], weight[keep]))

    def expand(self, latent: np.ndarray, token: np.ndarray,
               value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(latent, token, value) as (latent, term, value), once per word of the token."""
        tokens, inverse = np.unique(token, return_inverse=True)
        words = [self.source.token_terms(t) for t in tokens.tolist()]
        count = np.array([len(w) for w in words], np.int64)
        flat = np.array([n for w in words for n in w], np.int64)
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        per = count[inverse.ravel()]
        at = np.repeat(start[inverse.ravel()] - np.cumsum(per) + per, per) + np.arange(per.sum())
        return np.repeat(latent, per), flat[at], np.repeat(value, per)

    def ranked(self) -> Postings:
        """The chunk's postings, naming only the terms they use (numbered 0.. in the
        source's order)."""
        if not self.parts:
            return rank_postings([], *(np.zeros(0, np.int64),) * 2, np.zeros(0))
        latent, term, weight = (np.concatenate(col) for col in zip(*self.parts, strict=True))
        used, term = np.unique(term, return_inverse=True)
        terms = self.source.terms
        return rank_postings([terms[t] for t in used.tolist()], term.ravel(), latent, weight)
