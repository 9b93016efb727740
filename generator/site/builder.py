"""The page builder: page contexts (generator/site/contexts.py) from a `StoreData`, with pure
functions (no files).

Token lines are built in Python (generator/site/tokens.py) because they are the hot loop (70
examples x ~15 tokens per page) and must match the browser's own rendering of expanded sequences
exactly; the per-page data blob and its example codes are generator/site/codec.py's.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Int
from markupsafe import Markup

from generator.explain.labels import Label
from generator.site.cards import Card
from generator.site.charts import (
    activation_chart,
    bin_interval,
    count,
    density_chart,
    interval_alphas,
    logit_chart,
    percent,
    plural,
    round3,
    sig,
    signed,
    signeds,
    sigs,
)
from generator.site.codec import (
    ACT_LEVELS,
    CLASSES,
    DLOSS_MARK_MILLI,
    append_acts,
    append_gaps,
    level,
    script_json,
    varint_code,
)
from generator.site.contexts import (
    BOS_HTML,
    DEFAULT_SHOWING,
    Ablation,
    Badge,
    ExampleView,
    IndexPage,
    IntervalGroup,
    LabelView,
    LatentPage,
    LogitRow,
    NeighbourRow,
    QualityView,
    Showing,
    SiteInfo,
    TableRow,
    TokenCell,
    TopTokenRow,
)
from generator.site.mapview import SiteMap
from generator.site.quality import (
    AT_BOS,
    AT_FIRST,
    DEAD,
    DENSE,
    FLAGS,
    LABEL_FLAG,
    SINGLE,
    WELL_EXPLAINED,
    WELL_EXPLAINED_FROM,
    latent_quality,
)
from generator.site.tokens import Display, TokenText, display_json, display_text, token_html
from generator.store.schema import EXAMPLE_TOP, StoreData

HELPED_ONLY = "p"
"""a window token whose only class is this (underlined: the latent helped predict it, the most
common marked token) is written as a bare `<i>` to save bytes; the browser puts the class back
and the stylesheet styles a class-less `<i>` of a snippet the same way."""


def site_info(data: StoreData, showing: Showing = DEFAULT_SHOWING,
              shown: np.ndarray | None = None) -> SiteInfo:
    """`shown`: the example rows the pages show (PageBuilder.shown; computed when not given)."""
    meta = data.meta
    corpus = data.corpus is not None and showing.corpus_view
    if corpus and shown is None:
        shown = shown_mask(data, showing)
    return SiteInfo(
        name="feature-browser", model=meta.model, sae=meta.sae,
        architecture=meta.sae_architecture, hook=meta.hook_label, corpus=meta.corpus,
        processing=meta.processing_label, positions=meta.positions_label,
        n_tokens=count(meta.n_tokens), n_seqs=count(meta.n_seqs), ctx=meta.ctx,
        created=meta.created, d_sae=meta.d_sae, ln_folded=meta.ln_folded,
        logit_direction=meta.logit_direction, has_ablation=meta.has_ablation,
        has_bos=meta.bos_id >= 0, coact_method=meta.coact_method,
        samples_per_interval=int(meta.settings.get("m", 0)),
        settings=[(k, str(v)) for k, v in sorted(meta.settings.items())],
        versions=[(k, str(v)) for k, v in sorted(meta.versions.items())],
        has_map=data.latents.map_x is not None,
        n_prompts=len(data.prompts) if data.prompts is not None else 0,
        n_corpus=len(np.unique(data.examples.seq[shown])) if corpus else 0,
        corpus_view=corpus,
    )


class PageBuilder:
    """Builds page contexts from a store. Holds the token text and per-store lookups (example
    order, sequence rows, vocabulary pieces needing UTF-8 merging) so each page is cheap."""

    def __init__(self, data: StoreData, explanations: dict[int, str],
                 showing: Showing = DEFAULT_SHOWING, labels: dict[int, Label] | None = None
                 ) -> None:
        self.data, self.explanations, self.showing = data, explanations, showing
        self.labels = labels or {}
        """generated explanations' models and scores (generator/explain/labels.py), for the
        latents whose shown explanation is the generated one."""
        self.text = TokenText(data.vocab)
        self.lat = data.latents
        self.max3 = [round3(float(x)) for x in self.lat.max_act]
        self.max3_array = np.array(self.max3, dtype=np.float64)
        """max3 as an array, made once: shards index it (a list of 1M floats per shard was
        minutes at 1M latents, and forked workers touching its objects copied their pages)."""
        self.is_top = top_mask(data)
        """True for the top examples' rows (the others are interval samples)."""
        self._seq_rows = sorted_positions(np.asarray(data.seq_ids), np.asarray(data.examples.seq))
        self._ex_order, self._ex_bounds = _example_slices(data, self.is_top)
        self.partial_vocab = _partial_token_mask(data.vocab)
        """per vocabulary id: its bytes are not whole UTF-8 characters (displays merge it)."""
        self._seq_cache: dict[int, list[Display]] = {}
        self._html_cache: dict[tuple[int, str], str] = {}
        self._cells: dict[int, TokenCell] = {}
        self._labels: dict[int, str] = {}
        """a token's cell and a latent's short label, made once: a corpus page names ~200
        latents and shows their top tokens, so without them a render remade each ~100 times."""
        self._token_labels: dict[int, str] = {}
        self._displays: dict[int, str | list[str]] = {}
        """a token's display for the packed site's records (`display`), made once too."""
        self.shown = _shown(self.is_top, data.examples.rank, showing)
        """True for the example rows that pages show."""
        self.map = SiteMap.of(data)
        """the latent map, normalised, with every latent's map neighbours (None: no map)."""
        self.quality = latent_quality(self.lat, data.meta.n_tokens)
        """every latent's quality signals: flags, shares, encoder-decoder cosine."""
        self.scorers = {k for label in self.labels.values() for k in label.scores}
        """the scores some label has (made once: every table row asks)."""
        scored = [i for i, label in self.labels.items() if label.scores]
        self.flags = FLAGS + ((LABEL_FLAG,) if scored else ())
        """the flags this site shows: FLAGS, and "well explained" when explanations are scored."""
        for i in scored:
            accuracies = [v for k, v in self.labels[i].scores.items() if not k.endswith("auroc")]
            if accuracies and min(accuracies) >= WELL_EXPLAINED_FROM:
                self.quality.flags[i] |= WELL_EXPLAINED

    # -- latent pages ---------------------------------------------------------------------

    def latent_page(self, i: int, html: bool = True,
                    examples: tuple[list[ExampleView], list[IntervalGroup], dict] | None = None
                    ) -> LatentPage:
        """Latent i's page; without `html`, its examples carry their windows' bounds instead of
        their HTML and it has no charts (the packed site's viewer draws both). `examples`:
        examples_of(i, html)'s result, when made already (generator/site/shardcodes.py)."""
        lat, meta = self.lat, self.data.meta
        n_active = int(lat.n_active[i])
        dead = n_active == 0
        density = n_active / max(1, meta.n_tokens)
        top, groups, blob = examples if examples is not None else self.examples_of(i, html)
        explanation = self.explanations.get(i, "")
        title, description = self.describe(i, explanation)
        data = {"m": blob["m"], "e": " ".join(blob["e"])}
        return LatentPage(
            id=i, title=title, description=description, explanation=explanation, dead=dead,
            density=percent(density), zero_frac=percent(1 - density), max=sig(lat.max_act[i]),
            mean=sig(lat.sum_act[i] / n_active) if n_active else "n/a", n_active=count(n_active),
            prev=i - 1 if i > 0 else None, next=i + 1 if i + 1 < lat.d_sae else None,
            hist=None if dead or not html else activation_chart(
                lat.hist[i], lat.interval_counts[i], float(lat.max_act[i])),
            logit_hist=logit_chart(lat.logit_hist[i], float(lat.logit_lo[i]),
                                   float(lat.logit_hi[i])) if html else None,
            logit_pos=self.logit_rows(lat.logit_pos_ids[i], lat.logit_pos_vals[i]),
            logit_neg=self.logit_rows(lat.logit_neg_ids[i], lat.logit_neg_vals[i]),
            top_examples=top, n_top=self.n_top(i), intervals=groups,
            blob=script_json(data) if html else Markup(""), data=data,
            ablation=self.ablation(i), top_tokens=self.top_tokens(i),
            nb_cos=self.neighbours(lat.nb_cos_ids, lat.nb_cos_vals, i),
            nb_coact=self.neighbours(lat.nb_coact_ids, lat.nb_coact_vals, i),
            map=self.map.spot(i, self.short_label) if self.map else None,
            quality=QualityView(self.badges(i, long=True), self.quality_figures(i)),
            label=self.label_view(i),
        )

    SCORE_COLUMNS = (("sd", "detection"), ("sf", "fuzzing"))
    """(table key, Label.scores key and header) of the explanation scores' columns."""

    def label_view(self, i: int) -> LabelView | None:
        """Latent i's generated explanation's model and scores (None: not generated)."""
        label = self.labels.get(i)
        if label is None:
            return None
        scores: list[tuple[str, str, str]] = []
        for key in ("detection", "fuzzing"):
            n = label.examples.get(key, 0)
            if key in label.scores:
                scores.append((key, f"{label.scores[key]:.2f}",
                               f"Balanced accuracy of delphi's {key} scorer on {n} held-out "
                               "examples, activating and not (0.5: chance)"))
            if key + "_auroc" in label.scores:
                scores.append((f"{key} AUROC", f"{label.scores[key + '_auroc']:.2f}",
                               f"AUROC of the {key} scorer's probabilities on {n} held-out "
                               "examples"))
        return LabelView(label.model, scores)

    def score_columns(self) -> list[tuple[str, str, str]]:
        """The index table's score columns: (key, header, tooltip), for the scorers that ran."""
        return [(key, name, f"balanced accuracy of the {name} scorer (0.5: chance)")
                for key, name in self.SCORE_COLUMNS if name in self.scorers]

    def score_value(self, i: int, name: str) -> float | None:
        label = self.labels.get(i)
        value = label.scores.get(name) if label else None
        return None if value is None else round(value, 3)

    def score_cells(self, i: int) -> list[str]:
        values = [self.score_value(i, name) for _, name, _ in self.score_columns()]
        return ["" if value is None else f"{value:.2f}" for value in values]

    def badges(self, i: int, long: bool = False) -> list[Badge]:
        """Latent i's flags; `long`: with the number behind each (the latent page)."""
        q, flags = self.quality, int(self.quality.flags[i])
        shares = {DENSE: q.density, AT_BOS: q.bos_share, AT_FIRST: q.first_share,
                  SINGLE: q.top_token_share}
        out = []
        for bit, key, label, meaning in self.flags:
            if not flags & bit:
                continue
            share = shares.get(bit)
            value = percent(float(share[i])) if share is not None else ""
            title = meaning[0].upper() + meaning[1:]  # the table's (static/table.js writes it too)
            if not long:
                pass
            elif bit == DEAD:
                title = f"Never active on the {count(self.data.meta.n_tokens)} tokens analysed"
            elif bit == DENSE:
                title = f"Active on {value} of the tokens analysed: more than 10%"
            elif bit == SINGLE:
                token = (self.top_token_labels(i, 1) or ["?"])[0]
                title = f"{value} of its activation is on the token “{token}”: at least 90%"
            elif share is not None:
                title = f"{value} of its activation is at " + (
                    "BOS / document-boundary positions, which every other statistic leaves "
                    "out" if bit == AT_BOS else "the first position after a BOS") + \
                    ": more than half"
            out.append(Badge(key, f"{label} {value}" if long and value else label, title))
        return out

    def quality_figures(self, i: int) -> list[tuple[str, str]]:
        q = self.quality
        out = []
        if q.bos_share is not None and q.first_share is not None:
            out += [("activation at BOS positions", percent(float(q.bos_share[i]))),
                    ("at first positions", percent(float(q.first_share[i])))]
        if q.top_token_share is not None:
            out.append(("on its top token", percent(float(q.top_token_share[i]))))
        if q.enc_dec_cos is not None:
            out.append(("encoder–decoder cosine", sig(float(q.enc_dec_cos[i]))))
        return out

    def describe(self, i: int, explanation: str) -> tuple[str, str]:
        """Title and link-preview description: the explanation, else top tokens and logits."""
        name = f"Latent {i}"
        summary = self.summary(i, explanation)
        title = f"{name}: {clip(summary, 70)}" if summary else name
        description = (f"{name} of {self.data.meta.sae} ({self.data.meta.hook_label}), density "
                       f"{percent(self.lat.n_active[i] / max(1, self.data.meta.n_tokens))}. "
                       f"{summary}")
        return title, clip(description, 200)

    def summary(self, i: int, explanation: str) -> str:
        """What the latent is about: its explanation, else what it fires on and promotes."""
        if explanation:
            return explanation
        tokens = self.top_token_labels(i, 5)
        logits = [self.cell(t).text.strip() for t in self.lat.logit_pos_ids[i][:5]]
        facts = []
        if tokens:
            facts.append("fires on " + ", ".join(tokens))
        facts.append("promotes " + ", ".join(logits))
        return "; ".join(facts)

    def card(self, i: int, page: LatentPage, footer: str) -> Card:
        """The link card of latent i (generator.site.cards); `footer` is the page's address."""
        lat, meta = self.lat, self.data.meta
        hist: list[int] = []
        alphas: list[float] = []
        if not page.dead:
            hist = [int(c) for c in lat.hist[i]]
            n_int = lat.interval_counts.shape[1]
            colours = interval_alphas(n_int)
            alphas = [float(colours[bin_interval(k, len(hist), n_int)]) for k in range(len(hist))]
        top = ([] if lat.top_token_ids is None else
               [(k, int(t)) for k, t in enumerate(lat.top_token_ids[i]) if t >= 0])
        if top:
            counts = lat.top_token_counts
            title = "Top tokens (active positions)" if counts is not None else "Top tokens"
            tokens = [(self.text.token(t), count(counts[i][k]) if counts is not None else
                       sig(float(lat.top_token_sums[i][k])))  # type: ignore[index]
                      for k, t in top]
        else:
            title = "Promotes (logit effect)"
            tokens = [(self.text.token(int(t)), signed(float(v)))
                      for t, v in zip(lat.logit_pos_ids[i], lat.logit_pos_vals[i], strict=True)]
        return Card(
            id=i, label=self.summary(i, page.explanation), context=f"{meta.sae} · {meta.hook_label}",
            stats=(f"density {page.density} · max {page.max} · {page.n_active} active "
                   f"position{'' if lat.n_active[i] == 1 else 's'}"),
            hist=hist, alphas=alphas, hist_labels=("0", page.max), tokens_title=title,
            tokens=tokens, footer=footer,
            dead_note=(f"Never activated on the {count(meta.n_tokens)} tokens analysed."
                       if page.dead else ""),
        )

    def top_token_labels(self, i: int, n: int) -> list[str]:
        if self.lat.top_token_ids is None:
            return []
        return [self.token_label(t) for t in self.lat.top_token_ids[i][:n].tolist() if t >= 0]

    def token_label(self, token_id: int) -> str:
        """A token's text as labels and titles name it (made once per token: the index table
        names 3 for each of up to a million latents)."""
        label = self._token_labels.get(token_id)
        if label is None:
            text = self.cell(token_id).text
            label = self._token_labels[token_id] = text.strip() or text
        return label

    def cell(self, token_id: int) -> TokenCell:
        token_id = int(token_id)
        cell = self._cells.get(token_id)
        if cell is None:
            display = self.text.token(token_id)
            cell = self._cells[token_id] = TokenCell(html=Markup(token_html(display, breaks=False)),
                                                     text=display_text(display))
        return cell

    def display(self, token_id: int) -> str | list[str]:
        """A token's display as the browser reads it (display_json), made once per token."""
        shown = self._displays.get(token_id)
        if shown is None:
            shown = self._displays[token_id] = display_json(self.text.token(token_id))
        return shown

    def logit_rows(self, ids: np.ndarray, vals: np.ndarray) -> list[LogitRow]:
        return [LogitRow(self.cell(t), text)
                for t, text in zip(ids.tolist(), signeds(vals), strict=True)]

    def ablation(self, i: int) -> Ablation | None:
        lat = self.lat
        if lat.abl_mean is None or lat.abl_frac_helped is None:
            return None
        mean, frac = float(lat.abl_mean[i]), float(lat.abl_frac_helped[i])
        return Ablation(mean=signed(mean) if math.isfinite(mean) else "n/a",
                        frac_helped=percent(frac), available=math.isfinite(mean))

    def top_tokens(self, i: int) -> list[TopTokenRow] | None:
        lat = self.lat
        if lat.top_token_ids is None or lat.top_token_sums is None:
            return None
        counts = lat.top_token_counts
        return [TopTokenRow(self.cell(t), total,
                            count(counts[i][k]) if counts is not None else "")
                for k, (t, total) in enumerate(zip(lat.top_token_ids[i].tolist(),
                                                   sigs(lat.top_token_sums[i]), strict=True))
                if t >= 0]

    def neighbours(self, ids: np.ndarray | None, vals: np.ndarray | None,
                   i: int) -> list[NeighbourRow] | None:
        if ids is None or vals is None:
            return None
        return [NeighbourRow(j, value, self.short_label(j))
                for j, value in zip(ids[i].tolist(), sigs(vals[i]), strict=True)
                if 0 <= j < self.lat.d_sae]

    def short_label(self, i: int) -> str:
        label = self._labels.get(i)
        if label is None:
            label = self._labels[i] = (clip(self.explanations[i], 40) if i in self.explanations
                                       else " ".join(self.top_token_labels(i, 3)))
        return label

    # -- examples -------------------------------------------------------------------------

    def example_rows(self, i: int) -> np.ndarray:
        """Rows of latent i's examples in page order: top examples, then intervals by rank."""
        lo, hi = self._ex_bounds[i]
        return self._ex_order[lo:hi]

    def example_tokens(self, row: int) -> np.ndarray:
        """Token ids of the sequence that example row `row` shows."""
        return self.data.seq_tokens[self._seq_rows[row]]

    def bos_mask(self, tokens: np.ndarray) -> np.ndarray:
        """True at BOS / document-boundary positions (none when the store's bos_id is -1)."""
        return np.asarray(tokens) == self.data.meta.bos_id

    def examples_of(self, i: int,
                    html: bool = True) -> tuple[list[ExampleView], list[IntervalGroup], dict]:
        """Top examples, interval groups (every interval, even empty) and the page's data blob.

        The latent's examples are handled as one block (activations, BOS masks, Δloss as 2-D
        arrays): this is the render's hot loop, ~70 examples a latent at default settings."""
        ex, peak = self.data.examples, self.max3[i]
        top: list[ExampleView] = []
        by_interval: dict[int, list[ExampleView]] = defaultdict(list)
        entries: list[str] = []
        rows = self.shown_rows(i)
        if len(rows):
            block = _ExampleBlock(self, rows, peak)
            show = self.showing
            for k, row in enumerate(rows.tolist()):
                is_top = ex.kind[row] == EXAMPLE_TOP
                view, entry = block.example(k, len(entries), show.window_top if is_top
                                            else show.window_interval, show.dloss_outside, html)
                entries.append(entry)
                if is_top:
                    top.append(view)
                else:
                    by_interval[int(ex.interval[row])].append(view)
        return top, self.interval_groups(i, by_interval), {"m": peak, "e": entries}

    def interval_groups(self, i: int,
                        by_interval: dict[int, list[ExampleView]]) -> list[IntervalGroup]:
        """Latent i's interval groups, highest first (every interval, even empty; none when
        dead), with their shown examples."""
        if not self.lat.n_active[i]:
            return []
        n_int = self.lat.interval_counts.shape[1]
        alphas = interval_alphas(n_int)
        peak = float(self.lat.max_act[i])
        bounds = sigs([j * peak / n_int for j in range(n_int + 1)])  # interval j: (bounds[j], bounds[j + 1]]
        counts = self.lat.interval_counts[i].tolist()
        return [IntervalGroup(j, bounds[j], bounds[j + 1], plural(counts[j], "sequence"),
                              by_interval.get(j, []), alphas[j])
                for j in reversed(range(n_int))]

    def n_top(self, i: int) -> int:
        kind = self.data.examples.kind
        return sum(1 for row in self.example_rows(i).tolist() if kind[row] == EXAMPLE_TOP)

    def shown_rows(self, i: int) -> np.ndarray:
        """The example rows a page shows: top examples of rank < `top`, interval samples of rank
        < `per_interval` (`example_rows` order)."""
        rows = self.example_rows(i)
        return rows[self.shown[rows]]

    def seq_rows_of(self, rows: np.ndarray) -> np.ndarray:
        """Rows in the store's kept sequences of the example rows `rows` (indices or a mask)."""
        return self._seq_rows[rows]

    def window_html(self, seq_row: int, tokens: np.ndarray, start: int, end: int,
                    classes: Sequence[str], bos: np.ndarray, partial: bool) -> str:
        """A window's HTML (see `_line_html`), from per-(token, classes) pieces when no partial
        UTF-8 piece needs merging across tokens."""
        if partial:
            return _line_html(self.sequence_displays(seq_row, start, end), classes, bos[start:end])
        cache, parts = self._html_cache, []
        for t, cls, is_bos in zip(tokens[start:end].tolist(), classes,
                                  bos[start:end].tolist(), strict=True):
            if is_bos:
                parts.append(BOS_HTML)
                continue
            html = cache.get((t, cls))
            if html is None:
                display = self.text.token(t)
                html = cache[(t, cls)] = (token_html(display) if cls == HELPED_ONLY else
                                          token_html(display, cls, bare=True))
            parts.append(html)
        return "".join(parts).replace("</b><b>", "")

    def sequence_displays(self, seq_row: int, start: int = 0,
                          end: int | None = None) -> list[Display]:
        """Displays of positions [start, end) of a kept sequence: from the per-token cache, or
        with UTF-8 merging over the whole sequence when it holds partial pieces."""
        ids = self.data.seq_tokens[seq_row]
        if not self.partial_vocab[ids].any():
            return [self.text.token(t) for t in ids[start:end]]
        if seq_row not in self._seq_cache:
            self._seq_cache[seq_row] = self.text.sequence(ids)
        return self._seq_cache[seq_row][start:end]

    # -- index ----------------------------------------------------------------------------

    def index_page(self, shards: int, table: dict[str, Any], token_shards: int = 0) -> IndexPage:
        """The index: `table` is the manifest of the table files (generator.site.search)."""
        lat, meta = self.lat, self.data.meta
        dead = int((lat.n_active == 0).sum())
        per_page = int(table["rows"])
        rows = [self.table_row(i) for i in range(min(per_page, lat.d_sae))]
        return IndexPage(
            title=f"Feature browser: {meta.sae} on {meta.model}",
            description=(f"{lat.d_sae:,} latents of {meta.sae} ({meta.hook_label}) on {meta.model}, "
                         f"analysed over {meta.n_tokens:,} tokens of {meta.corpus}."),
            l0=sig(meta.l0), dead=count(dead), alive=count(lat.d_sae - dead),
            density_chart=density_chart(lat.n_active / max(1, meta.n_tokens)), rows=rows,
            n_pages=max(1, math.ceil(lat.d_sae / per_page)), shards=shards,
            token_shards=token_shards, explained=len(self.explanations), table=script_json(table),
            sorts=frozenset(table["sorts"]), figures=self.sae_figures(),
            figures_note=self.figures_note(), quality_cols=self.quality_columns(),
            flags=list(self.flags), score_cols=self.score_columns(),
        )

    def quality_columns(self) -> list[tuple[str, str, str]]:
        """The index table's quality columns after the flags: (key, header, tooltip)."""
        q, out = self.quality, []
        if q.bos_share is not None:
            out += [("b", "BOS", "share of its activation at BOS / document-boundary positions"),
                    ("f", "1st", "share of its activation at the first position after a BOS")]
        if q.top_token_share is not None:
            out.append(("s", "top token", "share of its activation on its top token"))
        if q.enc_dec_cos is not None:
            out.append(("c", "enc·dec", "cosine of its encoder and decoder directions"))
        return out

    def quality_cells(self, i: int) -> list[str]:
        q, cells = self.quality, {"b": self.quality.bos_share, "f": self.quality.first_share,
                                  "s": self.quality.top_token_share}
        out = []
        for key, _, _ in self.quality_columns():
            if key == "c":
                assert q.enc_dec_cos is not None
                out.append(sig(float(q.enc_dec_cos[i])))
            else:
                share = cells[key]
                assert share is not None
                out.append(percent(float(share[i])))
        return out

    def sae_figures(self) -> list[tuple[str, str]]:
        """SAE-level figures for the index summary: flag counts, then the store's figures."""
        q, meta = self.quality, self.data.meta
        counts = {key: int(((q.flags & bit) > 0).sum()) for bit, key, _, _ in FLAGS}
        out = [("dense (density > 10%)", count(counts["dense"]))]
        if q.bos_share is not None:
            out += [("mostly at BOS", count(counts["bos"])),
                    ("mostly at the first position", count(counts["first"]))]
        if q.top_token_share is not None:
            out.append(("single-token (≥ 90% on one token)", count(counts["single"])))
        if meta.eval_n_seqs:
            def nats(x: float | None) -> str:
                return sig(x) if x is not None else "n/a"

            out += [("explained variance", nats(meta.explained_variance)),
                    ("CE loss clean / SAE spliced in / zero-ablated",
                     f"{nats(meta.ce_loss_clean)} / {nats(meta.ce_loss_spliced)} / "
                     f"{nats(meta.ce_loss_zero)} nats"),
                    ("loss recovered", percent(meta.loss_recovered)
                     if meta.loss_recovered is not None else "n/a")]
        return out

    def figures_note(self) -> str:
        meta = self.data.meta
        note = (f"L0 and the counts are over all {count(meta.n_tokens)} tokens analysed. Mostly "
                "at BOS / the first position: more than half of the latent's activation (BOS "
                "positions included) is at BOS positions / right after a BOS.")
        if not meta.eval_n_seqs:
            return note
        positions = plural(meta.eval_n_positions, "non-BOS position")
        predictions = plural(meta.eval_n_predictions, "next-token prediction")
        which = (f"all {count(meta.n_seqs)} sequences" if meta.eval_n_seqs >= meta.n_seqs else
                 f"the first {count(meta.eval_n_seqs)} of the {count(meta.n_seqs)} sequences")
        return (f"Explained variance and CE losses are over {which} ({positions}, "
                f"{predictions} of non-BOS tokens); "
                "the SAE's reconstruction is spliced in, or the hook zeroed, at every non-BOS "
                "position. Loss recovered = (zero-ablated − spliced) / (zero-ablated − clean). "
                + note)

    def table_row(self, i: int) -> TableRow:
        lat = self.lat
        abl = self.ablation(i)
        return TableRow(
            id=i, density=percent(lat.n_active[i] / max(1, self.data.meta.n_tokens)),
            max=sig(lat.max_act[i]), top=", ".join(self.top_token_labels(i, 3)),
            explanation=self.explanations.get(i, ""),
            abl_mean=abl.mean if abl else "", abl_frac=abl.frac_helped if abl else "",
            flags=self.badges(i), quality=self.quality_cells(i), scores=self.score_cells(i),
        )


class _ExampleBlock:
    """One latent's examples as 2-D arrays, and the per-example window and code built from them.

    Same numbers as the per-position definitions (`act_level`, `dloss_milli`, `encode_example`,
    which stay the reference): activation levels are computed in float64 as
    round(ACT_LEVELS * act / max), Δloss in the store's float32 as round(1000 * Δloss)."""

    def __init__(self, pages: PageBuilder, rows: np.ndarray, peak: float) -> None:
        data, ex = pages.data, pages.data.examples
        self.pages, self.rows = pages, rows
        self.seq = ex.seq[rows].tolist()
        self.seq_rows = pages._seq_rows[rows]
        self.tokens = np.asarray(data.seq_tokens[self.seq_rows])
        self.bos = self.tokens == data.meta.bos_id
        self.partial = pages.partial_vocab[self.tokens].any(axis=1).tolist()
        acts = np.asarray(ex.acts[rows])
        self.centre = acts.argmax(axis=1).tolist()
        self.value = sigs(acts.max(axis=1))
        self.active = (acts > 0) & ~self.bos
        self.levels = act_levels(acts, float(peak), self.active)
        self.width = acts.shape[1]
        # the nonzero entries of every example, as Python lists (examples are short: list
        # arithmetic beats a numpy call per example)
        r, c = np.nonzero(self.active)
        self.act = _Sparse(r, c, self.levels[r, c], len(rows))
        self.marks: np.ndarray | None = None
        self.dl: _Sparse | None = None
        if ex.dloss is not None:
            milli = dloss_marks(np.asarray(ex.dloss[rows]), self.bos)
            r, c = np.nonzero(milli)
            self.dl = _Sparse(r, c, milli[r, c], len(rows))
            self.marks = np.sign(milli)

    def example(self, k: int, n: int, window: tuple[int, int], dloss_outside: int,
                html: bool = True) -> tuple[ExampleView, str]:
        centre = self.centre[k]
        start, end = max(0, centre - window[0]), min(self.width, centre + window[1] + 1)
        act_pos, act_lvl = self.act.of(k)
        dl_pos, dl_val, cutoff = self.dloss(k, start, end, dloss_outside)
        values = [self.seq[k], start, end - start, centre - start, cutoff]
        append_acts(values, act_pos, act_lvl, start, end)
        append_gaps(values, dl_pos, [2 * v if v >= 0 else -2 * v - 1 for v in dl_val])
        seq_row = int(self.seq_rows[k])
        if not html:
            return (ExampleView(n, self.value[k], Markup(""), (seq_row, start, end)),
                    varint_code(values))
        lv = self.levels[k, start:end].tolist()
        marks = ([0] * (end - start) if self.marks is None else
                 self.marks[k, start:end].tolist())
        classes = [CLASSES[(level(a), t == centre, m)]
                   for t, a, m in zip(range(start, end), lv, marks, strict=True)]
        window_html = self.pages.window_html(seq_row, self.tokens[k], start, end, classes,
                                             self.bos[k], self.partial[k])
        return (ExampleView(n, self.value[k], Markup(window_html), (seq_row, start, end)),
                varint_code(values))

    def dloss(self, k: int, start: int, end: int,
              cap: int) -> tuple[list[int], list[int], int]:
        """Shipped Δloss positions (ascending) and values of example k, and the cutoff: every
        marked position in the window, the `cap` largest outside (see `dloss_milli`)."""
        if self.dl is None:
            return [], [], 0
        pos, val = self.dl.of(k)
        lo, hi = bisect_left(pos, start), bisect_left(pos, end)  # pos ascends
        if len(pos) - (hi - lo) <= cap:
            return pos, val, 0
        outside = sorted((-abs(v), p, v) for p, v in zip(pos[:lo] + pos[hi:], val[:lo] + val[hi:],
                                                           strict=True))
        kept = list(zip(pos[lo:hi], val[lo:hi], strict=True))
        kept += [(p, v) for _, p, v in outside[:cap]]
        kept.sort()
        cutoff = -outside[cap][0]
        return [p for p, _ in kept], [v for _, v in kept], cutoff


class _Sparse:
    """Row-grouped nonzero entries (positions, values) of a 2-D block, as Python lists."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n: int) -> None:
        self.bounds = np.searchsorted(rows, np.arange(n + 1)).tolist()
        self.cols, self.values = cols.tolist(), values.tolist()

    def of(self, k: int) -> tuple[list[int], list[int]]:
        lo, hi = self.bounds[k], self.bounds[k + 1]
        return self.cols[lo:hi], self.values[lo:hi]


def act_levels(acts: np.ndarray, peak: np.ndarray | float, active: np.ndarray) -> np.ndarray:
    """Shipped activation levels 1..ACT_LEVELS of the active entries (0 elsewhere, and where the
    latent's max `peak` is not positive), computed in float64 as round(ACT_LEVELS * act / max);
    `peak` is a scalar or one max per row ([n, 1])."""
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = np.round(ACT_LEVELS * acts.astype(np.float64) / peak)
    levels = np.clip(np.nan_to_num(levels), 1, ACT_LEVELS).astype(np.int64) * active
    return np.where(peak > 0, levels, 0)


def dloss_marks(dloss: np.ndarray, bos: np.ndarray) -> np.ndarray:
    """Δloss in 1e-3 nats by predicted position ([:, t]: token t, from dloss[:, t - 1]), int64;
    zero at BOS positions and where |Δ| < 0.01 (what the pages ship and underline)."""
    milli = np.zeros(dloss.shape, dtype=np.int64)
    milli[:, 1:] = np.round(np.nan_to_num(dloss[:, :-1]) * 1000).astype(np.int64)
    milli[:, 1:][bos[:, 1:]] = 0
    milli[np.abs(milli) < DLOSS_MARK_MILLI] = 0
    return milli


def _line_html(displays: Sequence[Display], classes: Sequence[str], bos: np.ndarray) -> str:
    """A window's HTML: BOS markers, token elements, and bare text for tokens without classes
    (adjacent muted segments of bare tokens merged)."""
    return "".join(BOS_HTML if is_bos else
                   token_html(display) if cls == HELPED_ONLY else
                   token_html(display, cls, bare=True)
                   for display, cls, is_bos in zip(displays, classes, bos, strict=True)
                   ).replace("</b><b>", "")


def top_mask(data: StoreData) -> np.ndarray:
    """True for the rows of top examples."""
    kind = data.examples.kind
    # a bound method mapped, not a generator: 40 M rows at 1,048,576 latents, 2.5x faster
    return np.fromiter(map(EXAMPLE_TOP.__eq__, kind), dtype=bool, count=len(kind))


def shown_mask(data: StoreData, showing: Showing) -> np.ndarray:
    """True for the example rows that pages show (ranks are 0-based within each group)."""
    return _shown(top_mask(data), data.examples.rank, showing)


def _shown(is_top: np.ndarray, rank: np.ndarray, showing: Showing) -> np.ndarray:
    top = len(rank) if showing.top is None else showing.top
    per = len(rank) if showing.per_interval is None else showing.per_interval
    return np.where(is_top, rank < top, rank < per)


def _example_slices(data: StoreData,
                    is_top: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Row order (latent, top-then-interval, interval, rank) and each latent's [lo, hi) slice.
    A store's rows come in that order (generator.store.schema.Examples), so the sort is only
    checked, in one pass (a 40 M-row lexsort was 10 s at 1,048,576 latents); any other order is
    sorted, stably, as before. Memory of the check: ~10 bytes a row at once (one key's steps
    and two masks: 0.4 GB at 40 M rows), less than the sort it saves."""
    ex = data.examples
    keys = (np.asarray(ex.latent), (~is_top).astype(np.int8), np.asarray(ex.interval),
            np.asarray(ex.rank))
    order = np.arange(len(is_top)) if _ascending(keys) else np.lexsort(keys[::-1])
    latents = keys[0][order]
    ids = np.arange(data.latents.d_sae)
    lo = np.searchsorted(latents, ids, side="left")
    hi = np.searchsorted(latents, ids, side="right")
    return order, list(zip(lo.tolist(), hi.tolist(), strict=True))


def sorted_positions(ids: Int[np.ndarray, " n"], values: Int[np.ndarray, " m"]
                     ) -> Int[np.ndarray, " m"]:
    """np.searchsorted(ids, values) for sorted non-negative integer `ids`, through a table of
    every answer from 0 to max(ids) when that table is no longer than `values`: a gather instead
    of a binary search per value (40 M examples into 1 M sequences: 0.4 s instead of 5 s).
    Memory: the table, 8 bytes x (max(ids) + 2), never more than the 8 bytes x len(values) of
    the answer."""
    if not len(ids) or ids[0] < 0 or int(ids[-1]) + 1 > len(values):
        return np.searchsorted(ids, values)
    table = np.searchsorted(ids, np.arange(int(ids[-1]) + 2))  # the last: every value above
    return table[np.clip(values, 0, int(ids[-1]) + 1)]


def _ascending(keys: tuple[np.ndarray, ...]) -> bool:
    """Whether rows are in ascending lexicographic order of `keys` (most significant first)."""
    if len(keys[0]) < 2:
        return True
    after = np.zeros(len(keys[0]) - 1, dtype=bool)  # row r + 1 is already after row r
    tied = np.ones_like(after)
    for key in keys:
        step = np.diff(key.astype(np.int64) if key.dtype.kind == "u" else key)
        after |= tied & (step > 0)
        tied &= step == 0
    return bool(np.all(after | tied))


def _partial_token_mask(vocab: Sequence[bytes]) -> np.ndarray:
    """True for vocab entries that are not whole UTF-8 text (they need neighbour merging)."""
    mask = np.zeros(max(1, len(vocab)), dtype=bool)
    for k, piece in enumerate(vocab):
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            mask[k] = True
    return mask


def clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"
