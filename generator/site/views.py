"""The prompt view's pages, from a store's `Prompts` (generator/compute/promptview.py), and the corpus
view's, from its `CorpusView` (generator/compute/corpusview.py): pure, no torch.

    prompts/index.html   every prompt: its text (clipped), length, top latents
    prompts/<n>.html     prompt n: every token (hover or select one to see its top latents),
                         and a table of the latents most active over the whole prompt
    corpus/index.html, corpus/<seq>.html   the same for every kept corpus sequence, `seq` its
                         global index (the examples' `seq`); `#t=P` selects position P

The two views differ only in their `View`: the corpus view lists CORPUS_TOP latents per token
and CORPUS_LIST per order, and its table sorts by max and total activation only, since Δloss is
known only for the latents whose page shows the sequence (taken from their examples' ablation,
`as_prompts`); elsewhere the page says "n/a" and the table "—".

A prompt page server-renders its tokens (one `<i>` per position, BOS as the muted BOS marker,
escaped by generator.site.tokens like every token of the site) and its latent table; its data is one
JSON blob in a `<script type=application/json>` (escaped for a script context: no `<`, `>`,
`&`), read by static/prompt.js, so the page works from file:// and fetches nothing:

    t  per position: [] at BOS, else up to `top` [latent, activation, Δloss] by activation
       (ties to the lower id); Δloss is of predicting the next token with the latent removed at
       every non-BOS position of the prompt, null where undefined (last position, BOS next);
       left out where not computed (corpus view)
    l  per position: the clean loss of predicting the next token (null where undefined)
    a  {latent: [position, activation, ...]} every active position of each latent the page names
       (corpus view: of each table latent, and of each latent whose page shows the sequence)
    x  corpus view only: {latent: [position, Δloss, ...]} at the active positions of each latent
       whose page shows the sequence, from that example (`#t=P&l=I`, the link from an example
       of latent I, lights I and lists it at P even outside the token's top)
    n  {latent: [label, max activation over the corpus]} the label (explanation or top tokens)
       and the colour scale (activation / max, as on latent pages)
    r  per table row, in page order: its rank by each of the view's orders (max activation,
       total activation and, prompts only, total |Δloss|) among all the latents active on the
       prompt (0 = first; ties to the lower id)
    k  the view's list size: the table shows the k first rows of the chosen order

The table holds the union of the k best latents by each order, so each order's top k is exact;
rows outside the current order's top are `hidden`. Numbers in the blob and on the page have 3
significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from markupsafe import Markup

from generator.site.builder import PageBuilder, clip
from generator.site.charts import count, finite3, round3, sig
from generator.site.codec import script_json
from generator.site.contexts import BOS_HTML, Showing
from generator.site.tokens import (
    decode_sequence,
    display_html,
    display_parts,
    display_text,
    token_html,
)
from generator.store.schema import CORPUS_LIST, CORPUS_TOP, CorpusView, Prompts, StoreData

PROMPT_TOP = 10
"""latents listed per token (the most active there)."""
PROMPT_LIST = 50
"""latents listed per order in a prompt's table (max, total activation, total |Δloss|)."""
ORDERS = ("max activation", "total activation", "total |Δloss|")


@dataclass(frozen=True)
class View:
    """What differs between the prompt view and the corpus view."""

    folder: str
    """the site folder: <folder>/<n>.html and <folder>/index.html."""
    noun: str
    """what a page is about: "prompt" or "sequence"."""
    orders: tuple[str, ...]
    """the table's sortable columns, a prefix of ORDERS."""
    top: int
    """latents listed per token."""
    k: int
    """latents listed per order."""
    dloss_all: bool
    """Δloss is computed for every active latent: each `t` entry carries it (null where
    undefined) and `a` covers every named latent. Otherwise (the corpus view) an entry without
    Δloss has 2 fields, and `a` covers the table's latents only: the page colours the others'
    tokens from `t`, where they are among the `top` most active."""


PROMPT_VIEW = View("prompts", "prompt", ORDERS, PROMPT_TOP, PROMPT_LIST, True)
CORPUS_VIEW = View("corpus", "sequence", ORDERS[:2], CORPUS_TOP, CORPUS_LIST, False)
SHOWN_ON = 12
"""corpus view: latents named in "shown as an example on the pages of ..." (then "N more")."""


@dataclass(frozen=True)
class PromptRow:
    latent: int
    label: str
    max: str
    total: str
    dloss: str
    n_active: str
    hidden: bool


@dataclass(frozen=True)
class PromptPage:
    n: int
    """the prompt's number, or the sequence's global index."""
    title: str
    description: str
    text_html: Markup
    """the prompt's text, escaped, control and format characters shown as escapes."""
    tokens_html: Markup
    n_tokens: int
    truncated: bool
    rows: list[PromptRow]
    n_active: int
    """latents active anywhere on the prompt."""
    blob: Markup
    prev: int | None
    next: int | None
    dloss_column: bool
    """the table has a total |Δloss| column: always in the prompt view; in the corpus view when
    some row's Δloss was computed."""
    shown_on: list[int]
    """corpus view: the first SHOWN_ON latents whose page shows this sequence as an example..."""
    n_shown: int
    """...of this many."""


@dataclass(frozen=True)
class PromptEntry:
    n: int
    text_html: Markup
    n_tokens: str
    truncated: bool
    top: list[tuple[int, str]]
    """the 3 latents with the largest max activation on it, with their label."""


@dataclass(frozen=True)
class PromptIndex:
    title: str
    description: str
    prompts: list[PromptEntry]
    """this list page's rows (LIST_PAGE at most)."""
    total: int
    """rows over all list pages."""
    page: int
    """1-based number of this list page..."""
    n_pages: int
    """...of this many: <folder>/index.html, then index-2.html, index-3.html, ..."""
    prev: str | None
    next: str | None
    """site paths of the neighbouring list pages."""


class PromptPages:
    """Page contexts of the prompt view, or with CORPUS_VIEW of the corpus view (`source` from
    `as_prompts`); labels and token text from the site's PageBuilder."""

    def __init__(self, data: StoreData, label: Any, text: Any, view: View | None = None,
                 source: Prompts | None = None, ids: np.ndarray | None = None,
                 n_latents: np.ndarray | None = None,
                 shown_on: Callable[[int], list[tuple[int, int]]] | None = None) -> None:
        p = source if source is not None else data.prompts
        assert p is not None
        view = view or PROMPT_VIEW
        self.data, self.p, self.label, self.text, self.view = data, p, label, text, view
        n = len(p)
        self.ids = ids if ids is not None else np.arange(n)
        """page number of each prompt (the sequence's global index in the corpus view)."""
        self.n_latents = n_latents
        self._entries = np.searchsorted(p.prompt, np.arange(n + 1))
        self._summary = np.searchsorted(p.s_prompt, np.arange(n + 1))
        self.bos_id = data.meta.bos_id
        self._shown = shown_on

    def ranks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(latents, their ranks [m, orders]) of prompt n's summary rows, by each of the view's
        orders; ties to the lower id (the rows are sorted by latent)."""
        p = self.p
        lo, hi = self._summary[n], self._summary[n + 1]
        latents = p.s_latent[lo:hi]
        keys = (p.s_max_act, p.s_sum_act, p.s_sum_abs_dloss)[:len(self.view.orders)]
        ranks = np.zeros((hi - lo, len(keys)), dtype=np.int64)
        for k, key in enumerate(keys):
            order = np.lexsort((latents, -np.asarray(key[lo:hi], dtype=np.float64)))
            ranks[order, k] = np.arange(hi - lo)
        return latents, ranks

    def page(self, n: int) -> PromptPage:
        p, view = self.p, self.view
        tokens = np.asarray(p.tokens[n])
        lo, hi = self._entries[n], self._entries[n + 1]
        pos, latent = p.pos[lo:hi], p.latent[lo:hi]
        act, dloss = p.act[lo:hi], p.dloss[lo:hi]
        # per position, its PROMPT_TOP latents by activation (ties to the lower id)
        order = np.lexsort((latent, -act.astype(np.float64), pos))
        first = np.searchsorted(pos[order], pos[order])  # each sorted entry's position's first
        per_pos: list[list[list[Any]]] = [[] for _ in range(len(tokens))]
        for e in order[np.arange(len(order)) - first < view.top].tolist():
            dl = finite3(float(dloss[e]))
            per_pos[int(pos[e])].append([int(latent[e]), round3(float(act[e])),
                                         *([dl] if dl is not None or view.dloss_all else [])])
        # the table: the union of each order's top k, in order of max activation
        s_lo = self._summary[n]
        latents, ranks = self.ranks(n)
        keep = np.flatnonzero((ranks < view.k).any(axis=1))
        keep = keep[np.argsort(ranks[keep, 0], kind="stable")]
        rows = [PromptRow(int(latents[j]), self.label(int(latents[j])),
                          sig(float(p.s_max_act[s_lo + j])), sig(float(p.s_sum_act[s_lo + j])),
                          _sig_known(float(p.s_sum_abs_dloss[s_lo + j])),
                          count(int(p.s_n_active[s_lo + j])), bool(ranks[j, 0] >= view.k))
                for j in keep.tolist()]
        named = sorted({int(x) for x in latents[keep]} |
                       {e[0] for slot in per_pos for e in slot})
        coloured = named if view.dloss_all else sorted(int(x) for x in latents[keep])
        acts: dict[str, list[float]] = {}
        for e in np.flatnonzero(np.isin(latent, coloured)).tolist():  # by position
            acts.setdefault(str(int(latent[e])), []).extend([int(pos[e]), round3(float(act[e]))])
        origin = self._shown(int(self.ids[n])) if self._shown is not None else []
        extra = self.example_data(origin, acts)
        named = sorted(set(named) | {i for i, _ in origin})
        max_act = self.data.latents.max_act
        blob = {
            "t": per_pos,
            "l": [finite3(float(x)) for x in p.loss[n]],
            "a": acts,
            "n": {str(i): [self.label(i), round3(float(max_act[i]))] for i in named},
            "r": [[int(x) for x in ranks[j]] for j in keep.tolist()],
            "k": view.k,
            **extra,
        }
        text = display_parts(self.parts_of(n))
        num, noun = int(self.ids[n]), view.noun.capitalize()
        title = f"{noun} {num}: {clip(display_text(display_parts(_clip_parts(self.parts_of(n), 80))), 60)}"
        meta = self.data.meta
        shown = [i for i, _ in origin]
        return PromptPage(
            n=num, title=title,
            description=clip(f"What fires on each token of {view.noun} {num}, for {meta.sae} "
                              f"({meta.hook_label}) on {meta.model}: {display_text(text)}", 200),
            text_html=display_html(text), tokens_html=self.tokens_html(tokens),
            n_tokens=len(tokens), truncated=bool(p.truncated[n]), rows=rows,
            n_active=int(self.n_latents[n]) if self.n_latents is not None else len(latents),
            blob=script_json(blob),
            prev=int(self.ids[n - 1]) if n > 0 else None,
            next=int(self.ids[n + 1]) if n + 1 < len(p) else None,
            dloss_column=view.dloss_all or any(r.dloss != "—" for r in rows),
            shown_on=shown[:SHOWN_ON], n_shown=len(shown))

    def example_data(self, origin: list[tuple[int, int]],
                     acts: dict[str, list[float]]) -> dict[str, Any]:
        """Corpus view: each latent whose page shows the sequence, from that example row (the
        numbers its page shows): its activations where `acts` lacks them, and under `x` its
        Δloss at its active positions ({latent: [position, Δloss or null, ...]})."""
        if not origin:
            return {}
        ex, x = self.data.examples, {}
        for i, row in origin:
            at = np.flatnonzero(ex.acts[row] > 0)
            if str(i) not in acts:
                acts[str(i)] = [v for p in at.tolist()
                                for v in (p, round3(float(ex.acts[row][p])))]
            if ex.dloss is not None:
                x[str(i)] = [v for p in at.tolist()
                             for v in (p, finite3(float(ex.dloss[row][p])))]
        return {"x": x} if x else {}

    def parts_of(self, n: int) -> list[str | int]:
        """A prompt's text as given; a corpus sequence's decoded text (its non-BOS tokens' bytes
        decoded together, undecodable bytes as ints: generator.site.tokens.decode_sequence)."""
        if self.p.text[n] or self.view.folder != "corpus":
            return [self.p.text[n]]
        vocab = self.data.vocab
        pieces = [vocab[t] for t in self.p.tokens[n].tolist() if t != self.bos_id]
        return [part for token in decode_sequence(pieces) for part in token]

    def tokens_html(self, tokens: np.ndarray) -> Markup:
        """One element per position: the BOS marker, or the token's escaped display."""
        displays = self.text.sequence(tokens.tolist())
        return Markup("".join(BOS_HTML if t == self.bos_id else token_html(d)
                              for t, d in zip(tokens.tolist(), displays, strict=True)))

    @property
    def list_pages(self) -> int:
        """List pages of the view (LIST_PAGE rows each, at least one)."""
        return max(1, -(-len(self.p) // LIST_PAGE))

    def index(self, page: int = 1) -> PromptIndex:
        """List page `page` (1-based) of the view's prompts or sequences."""
        p, meta = self.p, self.data.meta
        entries = []
        n_pages = self.list_pages
        for n in range((page - 1) * LIST_PAGE, min(len(p), page * LIST_PAGE)):
            latents, ranks = self.ranks(n)
            top = latents[np.argsort(ranks[:, 0])[:3]].tolist()
            entries.append(PromptEntry(
                n=int(self.ids[n]),
                text_html=display_html(display_parts(_clip_parts(self.parts_of(n), 160))),
                n_tokens=count(len(p.tokens[n])), truncated=bool(p.truncated[n]),
                top=[(int(i), self.label(int(i))) for i in top]))
        noun = self.view.noun
        return PromptIndex(
            title=f"{noun.capitalize()}s: {meta.sae} on {meta.model}",
            description=(f"What fires on each token of {count(len(p))} {noun}s, for {meta.sae} "
                         f"({meta.hook_label}) on {meta.model}."),
            prompts=entries, total=len(p), page=page, n_pages=n_pages,
            prev=list_path(self.view.folder, page - 1) if page > 1 else None,
            next=list_path(self.view.folder, page + 1) if page < n_pages else None)


def _sig_known(x: float) -> str:
    """A total |Δloss|, or "—" where it was not computed (corpus view, NaN)."""
    return sig(x) if math.isfinite(x) else "—"


def _example_keys(data: StoreData, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique seq x d_sae + latent of the example rows `rows` (default all), the first
    example row of each)."""
    ex = data.examples
    keys = ex.seq.astype(np.int64) * data.latents.d_sae + ex.latent.astype(np.int64)
    if rows is None:
        return np.unique(keys, return_index=True)
    unique, first = np.unique(keys[rows], return_index=True)
    return unique, rows[first]


def _shown_on(data: StoreData, shown: np.ndarray) -> Callable[[int], list[tuple[int, int]]]:
    """seq -> (latent, example row) of each latent whose page shows it as an example (ascending
    latent); `shown` marks the example rows the pages show (PageBuilder.shown)."""
    keys, rows = _example_keys(data, np.flatnonzero(shown))
    seqs, latents = np.divmod(keys, data.latents.d_sae)

    def shown_on(seq: int) -> list[tuple[int, int]]:
        lo, hi = np.searchsorted(seqs, [seq, seq + 1])
        return [(int(i), int(r)) for i, r in zip(latents[lo:hi], rows[lo:hi], strict=True)]
    return shown_on


def corpus_pages(data: StoreData, shown: np.ndarray, label: Any, text: Any) -> PromptPages:
    """The corpus view's pages: one per sequence that an example the pages show points to
    (`shown`: PageBuilder.shown; the store also keeps the sequences of samples a site leaves
    out, which no page would link to)."""
    assert data.corpus is not None
    keep = np.flatnonzero(np.isin(data.seq_ids, data.examples.seq[shown]))
    view = _rows_of(data.corpus, keep)
    source = as_prompts(data, view, keep, np.flatnonzero(shown))
    return PromptPages(data, label, text, CORPUS_VIEW, source,
                       ids=data.seq_ids[keep], n_latents=view.n_latents,
                       shown_on=_shown_on(data, shown))


def _rows_of(view: CorpusView, keep: np.ndarray) -> CorpusView:
    """The view of the kept rows `keep` (ascending), renumbered 0, 1, ..."""
    if len(keep) == len(view.n_latents):
        return view
    e, s = np.isin(view.row, keep), np.isin(view.s_row, keep)
    return CorpusView(
        loss=view.loss[keep], n_latents=view.n_latents[keep],
        row=np.searchsorted(keep, view.row[e]).astype(np.int32), pos=view.pos[e],
        latent=view.latent[e], act=view.act[e],
        s_row=np.searchsorted(keep, view.s_row[s]).astype(np.int32), s_latent=view.s_latent[s],
        s_n_active=view.s_n_active[s], s_max_act=view.s_max_act[s], s_sum_act=view.s_sum_act[s])


def as_prompts(data: StoreData, view: CorpusView, keep: np.ndarray | None = None,
               examples: np.ndarray | None = None) -> Prompts:
    """The corpus view as the prompt view's data: the kept sequences' tokens (`keep`: the rows
    of StoreData.seq_ids the view holds, default all) and the view's entries, with Δloss taken
    from the example rows `examples` (default all; the site passes the shown ones, so that every
    Δloss can be found on a latent page) of the same (sequence, latent) where the build ablated
    it (the same definition, generator/compute/engine.py; a pair that is both a top example and an
    interval sample has the same numbers in both, the first row is read) and NaN elsewhere."""
    d_sae = data.latents.d_sae
    keep = np.arange(len(data.seq_ids)) if keep is None else keep
    seqs = data.seq_ids[keep].astype(np.int64)
    n = len(seqs)
    keys, rows = _example_keys(data, examples)
    dl = data.examples.dloss

    def lookup(row: np.ndarray, latent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = seqs[row] * d_sae + latent.astype(np.int64)
        at = np.minimum(np.searchsorted(keys, key), max(len(keys) - 1, 0))
        found = (keys[at] == key) if len(keys) and dl is not None else np.zeros(len(key), bool)
        return found, rows[at] if len(keys) else at

    found, ex = lookup(view.row, view.latent)
    dloss = np.full(len(view.row), np.nan, dtype=np.float32)
    if dl is not None:
        dloss[found] = dl[ex[found], view.pos[found]]
    s_found, s_ex = lookup(view.s_row, view.s_latent)
    sum_abs = np.full(len(view.s_row), np.nan)
    if dl is not None and s_found.any():
        sum_abs[s_found] = np.nansum(np.abs(dl[s_ex[s_found]].astype(np.float64)), axis=1)
    return Prompts(
        text=[""] * n, tokens=list(data.seq_tokens[keep].astype(np.int32)),
        truncated=np.zeros(n, dtype=bool), loss=list(view.loss), prompt=view.row, pos=view.pos,
        latent=view.latent, act=view.act, dloss=dloss, s_prompt=view.s_row,
        s_latent=view.s_latent, s_n_active=view.s_n_active, s_max_act=view.s_max_act,
        s_sum_act=view.s_sum_act, s_sum_abs_dloss=sum_abs)


def _clip_parts(parts: list[str | int], n: int) -> list[str | int]:
    """The first n characters of decoded parts (an int, an undecodable byte, counts one;
    whitespace is kept: the display shows it), … when cut."""
    if sum(len(p) if isinstance(p, str) else 1 for p in parts) <= n:
        return parts
    out: list[str | int] = []
    left = n - 1
    for part in parts:
        if left <= 0:
            break
        piece = part[:left] if isinstance(part, str) else part
        out.append(piece)
        left -= len(piece) if isinstance(piece, str) else 1
    return [*out, "…"]


def site_views(data: StoreData, pages: PageBuilder, showing: Showing) -> Iterator[PromptPages]:
    """The views a site has, one at a time (each is built when the previous one is written): the
    prompt view when the store has prompts, the corpus view when it has one and the site shows
    it (labels and token text from the site's PageBuilder)."""
    if data.prompts is not None:
        yield PromptPages(data, pages.short_label, pages.text)
    if data.corpus is not None and showing.corpus_view:
        yield corpus_pages(data, pages.shown, pages.short_label, pages.text)


VIEW_CHUNK = 64
"""pages per unit of work of the page workers (generator/site/writer.py)."""
LIST_PAGE = 1000
"""rows per list page (corpus/index.html, index-2.html, ...: a list of 24,576 sequences on one
page would be ~12 MB)."""


def list_path(folder: str, page: int) -> str:
    """The site path of a view's list page `page` (1-based)."""
    return f"{folder}/index.html" if page == 1 else f"{folder}/index-{page}.html"


__all__ = ["CORPUS_VIEW", "ORDERS", "PROMPT_LIST", "PROMPT_TOP", "PROMPT_VIEW", "PromptPages",
           "View", "as_prompts", "corpus_pages", "site_views"]
