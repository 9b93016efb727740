"""The term index's postings of a run of latents (format and weights: generator/site/search.py),
made for a whole chunk of latents at once: the page workers' search work (writer.py).

The heavy source is the words of the active tokens in each latent's top examples: every active
position of ~20 examples a latent. They are summed per (latent, token) with array operations,
and only the distinct pairs reach Python, where a token becomes its words (once per token, cached).

Memory: the chunk's top examples as [E, ctx] arrays (E = chunk latents x top examples, ~1,300 at
64 latents x 20; x ctx 128 x 8 bytes: ~1.3 MB each), and the per-token word cache (one list per
distinct token seen, at most d_vocab).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from generator.site.search import SearchIndex, terms_of


class TermSource:
    """What the term index reads of every latent; `pages` is the site's PageBuilder."""

    def __init__(self, pages: Any) -> None:
        self.pages = pages
        self._words: dict[int, list[str]] = {}

    def words(self, token: int) -> list[str]:
        """A token's search terms (terms_of its plain text), made once per token."""
        words = self._words.get(token)
        if words is None:
            words = self._words[token] = terms_of(self.pages.text.plain(token))
        return words

    def index(self, search: SearchIndex, lo: int, hi: int) -> None:
        """Add the terms of latents [lo, hi) to `search` (weights: generator/site/search.py)."""
        lat, pages = self.pages.lat, self.pages
        example_terms = self.example_terms(lo, hi)
        for i in range(lo, hi):
            explanation = pages.explanations.get(i)
            if explanation:
                search.add_text(i, explanation, 1.0)
            if lat.top_token_ids is not None and lat.top_token_sums is not None:
                total = max(float(lat.sum_act[i]), 1e-30)
                for t, s in zip(lat.top_token_ids[i].tolist(), lat.top_token_sums[i].tolist(),
                                strict=True):
                    if t >= 0:
                        self._add(search, i, t, 0.4 + 0.6 * s / total)
            for rank, t in enumerate(lat.logit_pos_ids[i].tolist()):
                self._add(search, i, t, 0.5 - 0.03 * rank)
            for term, share in example_terms[i - lo].items():
                search.add_term(i, term, 0.2 + 0.3 * share)

    def _add(self, search: SearchIndex, i: int, token: int, weight: float) -> None:
        for term in self.words(token):
            search.add_term(i, term, weight)

    def example_terms(self, lo: int, hi: int) -> list[dict[str, float]]:
        """Per latent of [lo, hi): the words of the active tokens in its top examples, with
        their share of the activation summed over every (word, position) pair."""
        pages, ex = self.pages, self.pages.data.examples
        rows_of = [rows[pages.is_top[rows]] for rows in map(pages.example_rows, range(lo, hi))]
        out: list[dict[str, float]] = [{} for _ in rows_of]
        if not sum(len(rows) for rows in rows_of):
            return out
        rows = np.concatenate(rows_of)
        which = np.repeat(np.arange(hi - lo), [len(r) for r in rows_of])
        acts = np.asarray(ex.acts[rows], dtype=np.float64)
        tokens = np.asarray(pages.data.seq_tokens[pages.seq_rows_of(rows)], dtype=np.int64)
        r, p = np.nonzero(acts > 0)
        key = which[r] * (int(tokens.max()) + 1) + tokens[r, p]
        pairs, inverse = np.unique(key, return_inverse=True)
        sums = np.bincount(inverse.ravel(), weights=acts[r, p], minlength=len(pairs))
        span = int(tokens.max()) + 1
        mass: list[dict[str, float]] = [defaultdict(float) for _ in rows_of]
        for k, t, s in zip((pairs // span).tolist(), (pairs % span).tolist(), sums.tolist(),
                           strict=True):
            for term in self.words(t):
                mass[k][term] += s
        for k, terms in enumerate(mass):
            total = sum(terms.values()) or 1.0
            out[k] = {term: m / total for term, m in terms.items()}
        return out
