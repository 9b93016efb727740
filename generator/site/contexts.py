"""Page contexts: what templates see (frozen dataclasses, and NamedTuples for the rows a page has
dozens of, which are three times cheaper to make; templates only loop and branch), and
how much of each latent a site shows (`Showing`). Built from a store by generator/site/builder.py;
written by generator/site/writer.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from markupsafe import Markup

from generator.site.charts import Chart
from generator.site.codec import DLOSS_OUTSIDE
from generator.site.search import MAX_POSTINGS, SEARCH_FORMAT


@dataclass(frozen=True)
class Showing:
    """How much of each latent's examples a site ships (the store keeps them all)."""

    top: int | None
    """top examples shown (None: all k)."""
    per_interval: int | None
    """interval samples shown per interval (None: all m)."""
    window_top: tuple[int, int]
    """tokens server-rendered before and after a top example's max token."""
    window_interval: tuple[int, int]
    """the same for interval samples."""
    dloss_outside: int
    """Δloss values shipped per example outside its window (the largest; see the docstring)."""
    logits: int | None
    """promoted / suppressed tokens listed (None: all n_logits)."""
    logit_chart: bool
    """the histogram of logit effects over the vocabulary."""
    embed_files: bool
    """a card per latent in embed/<id>.html; without, the embed snippet shows the latent page in
    its card mode (`features/<id>.html?embed`, styled by static/app.js)."""
    corpus_view: bool
    """a page per kept sequence (corpus/<seq>.html) when the store has the corpus view."""


WINDOW_TOP = (10, 3)
"""tokens server-rendered before and after a top example's max token (the rest loads on click)."""


WINDOW_INTERVAL = (6, 2)
"""the same for interval samples: shorter, since there are 2.5x as many of them by default."""


TABLE_PAGE = 100
"""rows per page of the index table and per table file (the first page is server-rendered)."""


DEFAULT_SHOWING = Showing(top=None, per_interval=2, window_top=WINDOW_TOP,
                          window_interval=WINDOW_INTERVAL, dloss_outside=DLOSS_OUTSIDE,
                          logits=None, logit_chart=True, embed_files=True,
                          corpus_view=True)
"""the default site: every top example, 2 samples per interval (a 65,536-latent site with
ablation fits GitHub Pages' 1 GB; see README "Site size")."""


COMPACT_SHOWING = Showing(top=10, per_interval=1, window_top=(6, 2), window_interval=(4, 1),
                          dloss_outside=4, logits=5, logit_chart=False, embed_files=False,
                          corpus_view=False)
"""`--compact`: half the top examples, one sample per interval, shorter windows, the 4 largest
Δloss outside a window, 5 promoted / suppressed tokens and no logit histogram, no embed files,
no corpus view."""


BOS_MARK = "⟨bos⟩"


BOS_TITLE = "BOS / document boundary: excluded from statistics"


BOS_HTML = f"<i class=bos>{BOS_MARK}</i>"
"""a BOS token in a server-rendered window (static/examples.js builds the same; the legend and the
tooltip explain it)."""


@dataclass(frozen=True)
class TokenCell:
    html: Markup
    text: str


class LogitRow(NamedTuple):
    token: TokenCell
    value: str


class ExampleView(NamedTuple):
    n: int
    """anchor `ex-n` and index into the page's data blob."""
    value: str
    html: Markup
    """the window's tokens ("" when built for the packed site, whose viewer draws them)."""
    window: tuple[int, int, int] = (0, 0, 0)
    """(row in the store's kept sequences, start, end) of the window: what the packed site
    ships as the window's token symbols (generator/site/packed.py)."""


@dataclass(frozen=True)
class IntervalGroup:
    j: int
    lo: str
    hi: str
    count: str
    """number of sequences in the interval, with its noun."""
    examples: list[ExampleView]
    alpha: str
    """its colour: the opacity of the activation colour (generator.site.charts.interval_alphas), the
    same as its bars in the activation histogram."""


@dataclass(frozen=True)
class TopTokenRow:
    token: TokenCell
    total: str
    count: str


class NeighbourRow(NamedTuple):
    latent: int
    value: str
    label: str


@dataclass(frozen=True)
class MapSpot:
    """What a latent page shows of the map (LatentPage.map)."""

    left: str
    """the latent's marker on the overview picture, percent of its width and height."""
    top: str
    x: str
    """its coordinates in map units (3 significant digits)."""
    y: str
    neighbours: list[NeighbourRow]
    """its nearest latents on the map (value: the distance, in map units)."""


@dataclass(frozen=True)
class Badge:
    """A quality flag as shown: `key` names its CSS class (generator.compute.quality.FLAGS)."""

    key: str
    text: str
    title: str


@dataclass(frozen=True)
class QualityView:
    """A latent's quality signals (generator.compute.quality): its flags as badges, and the figures."""

    badges: list[Badge]
    figures: list[tuple[str, str]]
    """(what, value): the shares of its activation at BOS / first positions and on its top
    token, and its encoder-decoder cosine, where the store has them."""


@dataclass(frozen=True)
class LabelView:
    """A generated explanation's provenance and scores (generator/explain/labels.py)."""

    model: str
    """the chat model that wrote it."""
    scores: list[tuple[str, str, str]]
    """(name, value, tooltip) per score, e.g. ("detection", "0.85", "balanced accuracy ...")."""


@dataclass(frozen=True)
class Ablation:
    mean: str
    frac_helped: str
    available: bool


@dataclass(frozen=True)
class LatentPage:
    id: int
    title: str
    description: str
    explanation: str
    dead: bool
    density: str
    zero_frac: str
    max: str
    mean: str
    n_active: str
    prev: int | None
    next: int | None
    hist: Chart | None
    """None: dead, or built for the packed site (generator/site/packed.py), which draws it."""
    logit_hist: Chart | None
    logit_pos: list[LogitRow]
    logit_neg: list[LogitRow]
    top_examples: list[ExampleView]
    n_top: int
    """top examples in the store (the page may show fewer)."""
    intervals: list[IntervalGroup]
    blob: Markup
    """#fb-data: `data` as inline JSON (empty when built for the packed site, which ships `data`)."""
    ablation: Ablation | None
    top_tokens: list[TopTokenRow] | None
    nb_cos: list[NeighbourRow] | None
    nb_coact: list[NeighbourRow] | None
    data: dict | None = None
    """the blob's content before escaping: {"m": max, "e": space-separated example codes}."""
    map: MapSpot | None = None
    """its place on the latent map (generator.site.mapview), when the store has one."""
    quality: QualityView | None = None
    label: LabelView | None = None
    """where the explanation was generated: by which model, and its scores."""


@dataclass(frozen=True)
class TableRow:
    id: int
    density: str
    max: str
    top: str
    explanation: str
    abl_mean: str
    abl_frac: str
    flags: list[Badge] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)
    """the quality columns' cells, in IndexPage.quality_cols order."""
    scores: list[str] = field(default_factory=list)
    """the score columns' cells, in IndexPage.score_cols order."""


@dataclass(frozen=True)
class SiteInfo:
    """What every page shows about the build (header, footer, index overview)."""

    name: str
    model: str
    sae: str
    architecture: str
    hook: str
    corpus: str
    n_tokens: str
    n_seqs: str
    ctx: int
    created: str
    d_sae: int
    ln_folded: bool
    logit_direction: str
    has_ablation: bool
    has_bos: bool
    """whether BOS / document-boundary positions are known (and shown as markers)."""
    coact_method: str
    samples_per_interval: int
    """m: interval samples the build drew per interval (0 when unknown)."""
    settings: list[tuple[str, str]]
    versions: list[tuple[str, str]]
    processing: str = "not recorded"
    """the activations' weight processing in words (StoreMeta.processing_label)."""
    positions: str = ""
    """how sequences were made and which positions count (StoreMeta.positions_label)."""
    has_map: bool = False
    """whether the store has a latent map (the index draws it, latent pages show their spot)."""
    n_prompts: int = 0
    """prompts of the prompt view (prompts/, generator.site.views); 0: none."""
    n_corpus: int = 0
    """sequences of the corpus view (corpus/); 0: none."""
    corpus_view: bool = False
    """whether the site has the corpus view (example lines then link to it)."""
    packed: bool = False
    """a packed site (generator/site/packed.py): latent links go to latent.html#<id>."""


@dataclass(frozen=True)
class IndexPage:
    title: str
    description: str
    l0: str
    dead: str
    alive: str
    density_chart: Chart | None
    rows: list[TableRow]
    n_pages: int
    shards: int
    table: Markup
    """the table manifest (generator.site.search) as JSON for an inline script."""
    sorts: frozenset[str]
    """the table's sortable columns."""
    search_version: int = SEARCH_FORMAT
    token_shards: int = 0
    """shards of the token index (search/t<k>.js); 0: none."""
    max_postings: int = MAX_POSTINGS
    """postings a term lists at most (the search says "N+" when a term's list is full)."""
    explained: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)
    """(what, value): SAE-level quality figures and flag counts (generator.compute.quality)."""
    figures_note: str = ""
    """which sequences and positions the figures are over."""
    quality_cols: list[tuple[str, str, str]] = field(default_factory=list)
    """(key, header, tooltip) of the table's quality columns after the flags column."""
    score_cols: list[tuple[str, str, str]] = field(default_factory=list)
    """(key, header, tooltip) of the explanation scores' columns, after the explanation."""
    flags: list[tuple[int, str, str, str]] = field(default_factory=list)
    """(bit, key, badge, meaning) of every flag: the filter's choices."""


@dataclass(frozen=True)
class ViewerPage:
    """latent.html of a packed site (generator/site/packed.py): the viewer's page."""

    title: str
    description: str
    manifest: Markup
    """the manifest as JSON for an inline script."""
    shard: int
    """latents per data/<k>.bin (the page's head asks for the latent's shard at once)."""
