"""Render stage: a store in, a static website out (DESIGN §5). Pure: no torch, no sae_lens.

Layout of the site (every link relative, so it works from file://, localhost and a sub-path):

    index.html            overview, summary charts, paginated sortable table, search box
    features/<id>.html    one page per latent (dead ones too): the permalink
    embed/<id>.html       compact card for iframes
    search/latents.js     the latent table; search/s<k>.js: term-index shards (see search.py)
    seqs/<k>.js           display tokens of the kept sequences, SEQ_SHARD per file, for the
                          "expand to the whole sequence" control
    static/<name>.<hash>.<ext>   CSS/JS/icons copied from the repo's static/, content-hashed
    .nojekyll

Page contexts are frozen dataclasses built here; templates only loop and branch. Token lines are
built in Python (`generator.tokens`) because they are the hot loop (70 examples x ~15 tokens per
page) and must match the browser's own rendering of expanded sequences exactly.

Per-page data for tooltips and expansion is one JSON blob:
    {"m": max, "e": [[seq, start, end, peak, [pos, act, ...], [pos, dloss_milli, ...], cut], ...]}
where `e[n]` is the example with anchor `ex-n`, [start, end) the positions of the server-rendered
window, `peak` its max position, activations are rounded to 3 significant digits (only nonzero
ones), and Δloss is attributed to the token being predicted (position t+1 gets dloss[t]), in
units of 1e-3 nats, omitting |Δloss| < 0.01 (the tooltip then says so); outside the window only
the DLOSS_OUTSIDE largest are kept, and `cut` is the largest |Δloss| (milli) left out (0: none).

In the server-rendered window only tokens that carry information are elements (`<i class=..>`:
active, underlined or the max); the others are bare escaped text, which keeps pages small. So the
k-th `<i>` of a window is at the k-th position of sorted(acts ∪ Δloss ∪ {peak}) within
[start, end); the browser relies on exactly this. Expanded sequences make every token an element.
"""

from __future__ import annotations

import hashlib
import logging
import math
import posixpath
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import orjson
from markupsafe import Markup
from tqdm import tqdm

import generator
from generator.errors import UserError
from generator.search import (
    SEARCH_FORMAT,
    SearchIndex,
    dumps,
    script_call,
    table_script,
    terms_of,
)
from generator.store import EXAMPLE_TOP, StoreData
from generator.tokens import Display, TokenText, display_text, token_html

log = logging.getLogger(__name__)

WINDOW_TOP = (10, 3)
"""tokens server-rendered before and after a top example's max token (the rest loads on click)."""
WINDOW_INTERVAL = (6, 2)
"""the same for interval samples: shorter, since there are 2.5x as many of them by default."""
SEQ_SHARD = 64
"""sequences per seqs/<k>.js file."""
TABLE_PAGE = 100
"""rows per page of the index table (the first page is server-rendered)."""
DLOSS_MARK_MILLI = 10
"""|Δloss| (in 1e-3 nats) from which a token is underlined; smaller values are left out of the
page data (tooltips then say |Δloss| < 0.01)."""
DLOSS_OUTSIDE = 12
"""outside the server-rendered window, only this many largest |Δloss| per example are shipped
(for the expanded view; the entry records the cutoff so tooltips stay truthful)."""
LEVELS = 9
"""activation colour classes a1..a9."""
EMBED_EXAMPLES = 3
EMBED_LOGITS = 5
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
    """bytes per top-level part: features, embed, search, seqs, static, index, other."""
    seconds: float

    @property
    def bytes_per_latent(self) -> float:
        return self.total_bytes / max(1, self.latents)


def render_site(data: StoreData, out: Path, explanations: dict[int, str] | None = None,
                quiet: bool = False) -> RenderReport:
    """Render the whole site into `out`, atomically: the old site stays intact if anything fails."""
    start = time.perf_counter()
    out = Path(out)
    explanations = dict(explanations or {})
    _check_explanations(explanations, data.latents.d_sae)
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _SiteWriter(data, tmp, explanations, quiet).write_all()
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = _measure(out, data.latents.d_sae, time.perf_counter() - start)
    log.info("wrote %d pages (%.1f MB, %.0f KB per latent) to %s in %.1f s", report.pages,
             report.total_bytes / 1e6, report.bytes_per_latent / 1e3, out, report.seconds)
    return report


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
        text = path.read_bytes().decode("utf-8")
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


def _swap_in(tmp: Path, path: Path) -> None:
    """Replace `path` by `tmp` so that at every moment one complete version exists on disk."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{tmp.name[-8:]}")
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
# resources, links, formatting


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


def sig(x: float, digits: int = 3) -> str:
    """A number for people: 3 significant digits, thousands separators, no exponent below 1e6."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1000 and abs(x) < 1e6:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def signed(x: float) -> str:
    return ("+" if x > 0 else "") + sig(x)


def percent(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0%"
    v = 100 * x
    return f"{v:.3g}%" if v >= 0.001 else f"{v:.2e}%"


def count(n: int) -> str:
    return f"{int(n):,}"


def plural(n: int, noun: str) -> str:
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def round3(x: float) -> float:
    """3 significant digits: what the browser receives, so Python and JS classify identically."""
    return float(f"{x:.3g}")


def level(act: float, peak: float) -> int:
    """Colour class 1..LEVELS of an activation relative to the latent max (0 when inactive)."""
    if act <= 0 or peak <= 0:
        return 0
    return min(LEVELS, math.ceil(LEVELS * act / peak))


def _script_json(value: object) -> Markup:
    """JSON safe inside an inline <script> element (no `<`, `>` or `&`)."""
    raw = dumps(value).decode()
    return Markup(raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


# ---------------------------------------------------------------------------------------------
# page contexts (what templates see)


@dataclass(frozen=True)
class Bar:
    cls: str
    d: str
    title: str


@dataclass(frozen=True)
class Chart:
    """A bar chart drawn at render time as inline SVG: one path per colour class."""

    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str, str]]
    """(x, text-anchor, text) under the axis."""
    title: str


@dataclass(frozen=True)
class TokenCell:
    html: Markup
    text: str


@dataclass(frozen=True)
class LogitRow:
    token: TokenCell
    value: str


@dataclass(frozen=True)
class ExampleView:
    n: int
    """anchor `ex-n` and index into the page's data blob."""
    value: str
    html: Markup


@dataclass(frozen=True)
class IntervalGroup:
    j: int
    lo: str
    hi: str
    count: str
    """number of sequences in the interval, with its noun."""
    examples: list[ExampleView]


@dataclass(frozen=True)
class TopTokenRow:
    token: TokenCell
    total: str
    count: str


@dataclass(frozen=True)
class NeighbourRow:
    latent: int
    value: str
    label: str


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
    logit_hist: Chart
    logit_pos: list[LogitRow]
    logit_neg: list[LogitRow]
    top_examples: list[ExampleView]
    intervals: list[IntervalGroup]
    blob: Markup
    embed_blob: Markup
    """the data blob restricted to the embed card's examples (the first EMBED_EXAMPLES)."""
    ablation: Ablation | None
    top_tokens: list[TopTokenRow] | None
    nb_cos: list[NeighbourRow] | None
    nb_coact: list[NeighbourRow] | None


@dataclass(frozen=True)
class TableRow:
    id: int
    density: str
    max: str
    top: str
    explanation: str
    abl_mean: str
    abl_frac: str


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
    coact_method: str
    settings: list[tuple[str, str]]
    versions: list[tuple[str, str]]


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
    search_version: int = SEARCH_FORMAT
    explained: int = 0
    extra: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# charts


def bar_chart(counts: Sequence[int], classes: Sequence[str], titles: Sequence[str],
              labels: list[tuple[float, str]], title: str, height: int = 100) -> Chart:
    """Equal-width bars scaled to the largest count, drawn as one step outline per run of bins
    sharing a class and title (compact: ~10 bytes a bin). Non-empty bins stay >= 1 unit tall."""
    width = 600
    bar_w = width / max(1, len(counts))
    top = max(1, max(counts, default=0))
    heights = [0 if c <= 0 else max(1, round(height * c / top)) for c in counts]
    bars = []
    k = 0
    while k < len(counts):
        end = k
        while end + 1 < len(counts) and (classes[end + 1], titles[end + 1]) == (classes[k],
                                                                                 titles[k]):
            end += 1
        steps = "".join(f"V{height - heights[b]}H{_coord((b + 1) * bar_w)}"
                        for b in range(k, end + 1))
        bars.append(Bar(classes[k], f"M{_coord(k * bar_w)} {height}{steps}V{height}Z", titles[k]))
        k = end + 1
    anchored = [(x * width, "start" if x == 0 else "end" if x == 1 else "middle", text)
                for x, text in labels]
    return Chart(width=width, height=height, bars=bars, labels=anchored, title=title)


def _coord(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def activation_chart(hist: np.ndarray, interval_counts: np.ndarray, peak: float) -> Chart:
    """Histogram of active positions, each bin coloured by the interval its centre falls in."""
    n_bins, n_int = len(hist), len(interval_counts)
    interval_of = [min(n_int - 1, int((k + 0.5) * n_int / n_bins)) for k in range(n_bins)]
    classes = [f"a{interval_level(j, n_int)}" for j in interval_of]
    titles = []
    for j in interval_of:
        lo, hi = interval_bounds(j, n_int, peak)
        titles.append(f"({lo}, {hi}]: {plural(interval_counts[j], 'sequence')}")
    return bar_chart([int(c) for c in hist], classes, titles, [(0, "0"), (1, sig(peak))],
                     f"Histogram of nonzero activations over (0, {sig(peak)}], "
                     f"{n_bins} bins coloured by interval")


def interval_level(j: int, n_intervals: int) -> int:
    return max(1, math.ceil(LEVELS * (j + 1) / n_intervals))


def interval_bounds(j: int, n_intervals: int, peak: float) -> tuple[str, str]:
    return sig(j * peak / n_intervals), sig((j + 1) * peak / n_intervals)


def logit_chart(hist: np.ndarray, lo: float, hi: float) -> Chart:
    n = len(hist)
    centres = [lo + (k + 0.5) * (hi - lo) / max(1, n) for k in range(n)]
    classes = ["lp" if c >= 0 else "ln" for c in centres]
    return bar_chart([int(c) for c in hist], classes, [""] * n, [(0, sig(lo)), (1, sig(hi))],
                     f"Logit effects of this latent over the vocabulary, {n} bins over "
                     f"[{sig(lo)}, {sig(hi)}]")


def density_chart(densities: np.ndarray) -> Chart | None:
    alive = densities[densities > 0]
    if not len(alive):
        return None
    logs = np.log10(alive)
    lo = math.floor(float(logs.min()))
    bins = 40
    hist, _ = np.histogram(logs, bins=bins, range=(lo, 0.0))
    return bar_chart([int(c) for c in hist], ["a5"] * bins, [""] * bins,
                     [(0, f"1e{lo}"), (1, "1")],
                     f"log10 density of the {len(alive):,} latents that fire, {bins} bins")


# ---------------------------------------------------------------------------------------------
# the writer


class _SiteWriter:
    """Writes one site into a fresh folder. Holds the store, the templates and the token text."""

    def __init__(self, data: StoreData, out: Path, explanations: dict[int, str],
                 quiet: bool) -> None:
        self.data, self.out, self.explanations, self.quiet = data, out, explanations, quiet
        self.text = TokenText(data.vocab)
        self.lat = data.latents
        self.max3 = [round3(float(x)) for x in self.lat.max_act]
        self._seq_rows = np.searchsorted(data.seq_ids, data.examples.seq)
        self._ex_order, self._ex_bounds = _example_slices(data)
        self._partial_vocab = _partial_token_mask(data.vocab)
        self._seq_cache: dict[int, list[Display]] = {}

    def write_all(self) -> None:
        self.assets = copy_static(resource_dir("static"), self.out / "static")
        self.env = make_env(self.assets)
        self.site = site_info(self.data)
        search = SearchIndex()
        for i in tqdm(range(self.lat.d_sae), desc="pages", unit="latent", disable=self.quiet):
            page = self.latent_page(i)
            self.render(f"features/{i}.html", "feature.html", page=page)
            self.render(f"embed/{i}.html", "embed.html", page=page,
                        embed=_embed_subset(page))
            self.index_latent(search, i, page)
        shards, _ = search.write(self.out / "search")
        self.write_table()
        self.write_sequences()
        self.render("index.html", "index.html", page=self.index_page(shards))
        (self.out / SITE_MARKER).write_bytes(b"")

    def render(self, path: str, template: str, **context: Any) -> None:
        root = relative_url("x", path)[:-1] or "./"
        html = self.env.get_template(template).render(page_path=path, root=root, site=self.site,
                                                      **context)
        target = self.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8", newline="\n")

    # -- latent pages ---------------------------------------------------------------------

    def latent_page(self, i: int) -> LatentPage:
        lat, meta = self.lat, self.data.meta
        n_active = int(lat.n_active[i])
        dead = n_active == 0
        density = n_active / max(1, meta.n_tokens)
        top, groups, blob = self.examples_of(i)
        explanation = self.explanations.get(i, "")
        title, description = self.describe(i, explanation)
        return LatentPage(
            id=i, title=title, description=description, explanation=explanation, dead=dead,
            density=percent(density), zero_frac=percent(1 - density), max=sig(lat.max_act[i]),
            mean=sig(lat.sum_act[i] / n_active) if n_active else "n/a", n_active=count(n_active),
            prev=i - 1 if i > 0 else None, next=i + 1 if i + 1 < lat.d_sae else None,
            hist=None if dead else activation_chart(lat.hist[i], lat.interval_counts[i],
                                                    float(lat.max_act[i])),
            logit_hist=logit_chart(lat.logit_hist[i], float(lat.logit_lo[i]),
                                   float(lat.logit_hi[i])),
            logit_pos=self.logit_rows(lat.logit_pos_ids[i], lat.logit_pos_vals[i]),
            logit_neg=self.logit_rows(lat.logit_neg_ids[i], lat.logit_neg_vals[i]),
            top_examples=top, intervals=groups, blob=_script_json(blob),
            embed_blob=_script_json({"m": blob["m"], "e": blob["e"][:EMBED_EXAMPLES]}),
            ablation=self.ablation(i), top_tokens=self.top_tokens(i),
            nb_cos=self.neighbours(lat.nb_cos_ids, lat.nb_cos_vals, i),
            nb_coact=self.neighbours(lat.nb_coact_ids, lat.nb_coact_vals, i),
        )

    def describe(self, i: int, explanation: str) -> tuple[str, str]:
        """Title and link-preview description: the explanation, else top tokens and logits."""
        name = f"Latent {i}"
        tokens = self.top_token_labels(i, 5)
        logits = [self.cell(t).text.strip() for t in self.lat.logit_pos_ids[i][:5]]
        facts = []
        if tokens:
            facts.append("fires on " + ", ".join(tokens))
        facts.append("promotes " + ", ".join(logits))
        summary = explanation or "; ".join(facts)
        title = f"{name}: {_clip(summary, 70)}" if summary else name
        description = (f"{name} of {self.data.meta.sae} ({self.data.meta.hook}), density "
                       f"{percent(self.lat.n_active[i] / max(1, self.data.meta.n_tokens))}. "
                       f"{summary}")
        return title, _clip(description, 200)

    def top_token_labels(self, i: int, n: int) -> list[str]:
        if self.lat.top_token_ids is None:
            return []
        return [self.cell(t).text.strip() or self.cell(t).text
                for t in self.lat.top_token_ids[i][:n] if t >= 0]

    def cell(self, token_id: int) -> TokenCell:
        display = self.text.token(int(token_id))
        return TokenCell(html=Markup(token_html(display, breaks=False)),
                         text=display_text(display))

    def logit_rows(self, ids: np.ndarray, vals: np.ndarray) -> list[LogitRow]:
        return [LogitRow(self.cell(t), signed(float(v))) for t, v in zip(ids, vals, strict=True)]

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
        return [TopTokenRow(self.cell(t), sig(float(s)),
                            count(counts[i][k]) if counts is not None else "")
                for k, (t, s) in enumerate(zip(lat.top_token_ids[i], lat.top_token_sums[i],
                                               strict=True)) if t >= 0]

    def neighbours(self, ids: np.ndarray | None, vals: np.ndarray | None,
                   i: int) -> list[NeighbourRow] | None:
        if ids is None or vals is None:
            return None
        return [NeighbourRow(int(j), sig(float(v)), self.short_label(int(j)))
                for j, v in zip(ids[i], vals[i], strict=True) if 0 <= j < self.lat.d_sae]

    def short_label(self, i: int) -> str:
        if i in self.explanations:
            return _clip(self.explanations[i], 40)
        return " ".join(self.top_token_labels(i, 3))

    # -- examples -------------------------------------------------------------------------

    def examples_of(self, i: int) -> tuple[list[ExampleView], list[IntervalGroup], dict]:
        """Top examples, interval groups (every interval, even empty) and the page's data blob."""
        ex, peak = self.data.examples, self.max3[i]
        top: list[ExampleView] = []
        by_interval: dict[int, list[ExampleView]] = defaultdict(list)
        entries: list[list[Any]] = []
        lo, hi = self._ex_bounds[i]
        for row in self._ex_order[lo:hi]:
            window = WINDOW_TOP if ex.kind[row] == EXAMPLE_TOP else WINDOW_INTERVAL
            view, entry = self.example(int(row), len(entries), peak, window)
            entries.append(entry)
            if ex.kind[row] == EXAMPLE_TOP:
                top.append(view)
            else:
                by_interval[int(ex.interval[row])].append(view)
        n_int = self.lat.interval_counts.shape[1]
        groups = [IntervalGroup(j, *interval_bounds(j, n_int, float(self.lat.max_act[i])),
                                plural(self.lat.interval_counts[i][j], "sequence"),
                                by_interval.get(j, []))
                  for j in reversed(range(n_int))] if self.lat.n_active[i] else []
        return top, groups, {"m": peak, "e": entries}

    def example(self, row: int, n: int, peak: float,
                window: tuple[int, int]) -> tuple[ExampleView, list[Any]]:
        ex = self.data.examples
        acts = ex.acts[row]
        ctx = len(acts)
        centre = int(np.argmax(acts))
        start, end = max(0, centre - window[0]), min(ctx, centre + window[1] + 1)
        active = np.flatnonzero(acts > 0)
        rounded = {int(p): round3(float(acts[p])) for p in active}
        dl, cutoff = (_dloss_milli(ex.dloss[row], start, end) if ex.dloss is not None
                      else ({}, 0))
        displays = self.sequence_displays(int(self._seq_rows[row]), start, end)
        html = "".join(token_html(displays[t - start], token_classes(rounded.get(t, 0.0), peak,
                                                             t == centre, dl.get(t, 0)),
                                  bare=True)
                       for t in range(start, end)).replace("</b><b>", "")
        entry = [int(ex.seq[row]), start, end, centre, [x for p in rounded.items() for x in p],
                 [x for p in sorted(dl.items()) for x in p], cutoff]
        return ExampleView(n, sig(float(acts[centre])), Markup(html)), entry

    def sequence_displays(self, seq_row: int, start: int = 0,
                          end: int | None = None) -> list[Display]:
        """Displays of positions [start, end) of a kept sequence: from the per-token cache, or
        with UTF-8 merging over the whole sequence when it holds partial pieces."""
        ids = self.data.seq_tokens[seq_row]
        if not self._partial_vocab[ids].any():
            return [self.text.token(t) for t in ids[start:end]]
        if seq_row not in self._seq_cache:
            self._seq_cache[seq_row] = self.text.sequence(ids)
        return self._seq_cache[seq_row][start:end]

    # -- search, table, sequences, index --------------------------------------------------

    def index_latent(self, search: SearchIndex, i: int, page: LatentPage) -> None:
        """Add latent i's terms (weights documented in generator.search)."""
        lat = self.lat
        if page.explanation:
            search.add_text(i, page.explanation, 1.0)
        if lat.top_token_ids is not None and lat.top_token_sums is not None:
            total = max(float(lat.sum_act[i]), 1e-30)
            for t, s in zip(lat.top_token_ids[i], lat.top_token_sums[i], strict=True):
                if t >= 0:
                    search.add_text(i, self.text.plain(t), 0.4 + 0.6 * float(s) / total)
        for rank, t in enumerate(lat.logit_pos_ids[i]):
            search.add_text(i, self.text.plain(t), 0.5 - 0.03 * rank)
        for term, share in self.example_terms(i).items():
            search.add_term(i, term, 0.2 + 0.3 * share)

    def example_terms(self, i: int) -> dict[str, float]:
        """Terms of the active tokens in the top examples, with their share of the activation."""
        ex = self.data.examples
        mass: dict[str, float] = defaultdict(float)
        lo, hi = self._ex_bounds[i]
        for row in self._ex_order[lo:hi]:
            if ex.kind[row] != EXAMPLE_TOP:
                continue
            tokens = self.data.seq_tokens[self._seq_rows[row]]
            for p in np.flatnonzero(ex.acts[row] > 0):
                for term in terms_of(self.text.plain(tokens[p])):
                    mass[term] += float(ex.acts[row][p])
        total = sum(mass.values()) or 1.0
        return {term: m / total for term, m in mass.items()}

    def write_table(self) -> None:
        lat, meta = self.lat, self.data.meta
        density = lat.n_active / max(1, meta.n_tokens)
        columns: dict[str, list[Any]] = {
            "d": [float(f"{x:.3g}") for x in density],
            "x": self.max3,
            "t": [", ".join(self.top_token_labels(i, 3)) for i in range(lat.d_sae)],
            "e": [self.explanations.get(i, "") for i in range(lat.d_sae)],
        }
        if lat.abl_mean is not None and lat.abl_frac_helped is not None:
            columns["am"] = [_finite3(x) for x in lat.abl_mean]
            columns["af"] = [_finite3(x) for x in lat.abl_frac_helped]
        (self.out / "search" / "latents.js").write_bytes(table_script(columns, lat.d_sae))

    def write_sequences(self) -> None:
        """seqs/<k>.js: display tokens of every kept sequence, for expanding examples."""
        shards: dict[int, dict[str, list[Any]]] = defaultdict(dict)
        for row, seq in enumerate(self.data.seq_ids):
            displays = self.sequence_displays(row)
            shards[int(seq) // SEQ_SHARD][str(int(seq))] = [
                d[0] if len(d) == 1 else list(d) for d in displays]
        folder = self.out / "seqs"
        folder.mkdir(parents=True, exist_ok=True)
        for k, seqs in sorted(shards.items()):
            (folder / f"{k}.js").write_bytes(script_call("fbSeqs", k, seqs))

    def index_page(self, shards: int) -> IndexPage:
        lat, meta = self.lat, self.data.meta
        dead = int((lat.n_active == 0).sum())
        rows = [self.table_row(i) for i in range(min(TABLE_PAGE, lat.d_sae))]
        return IndexPage(
            title=f"Feature browser: {meta.sae} on {meta.model}",
            description=(f"{lat.d_sae:,} latents of {meta.sae} ({meta.hook}) on {meta.model}, "
                         f"analysed over {meta.n_tokens:,} tokens of {meta.corpus}."),
            l0=sig(meta.l0), dead=count(dead), alive=count(lat.d_sae - dead),
            density_chart=density_chart(lat.n_active / max(1, meta.n_tokens)), rows=rows,
            n_pages=max(1, math.ceil(lat.d_sae / TABLE_PAGE)), shards=shards,
            explained=len(self.explanations),
        )

    def table_row(self, i: int) -> TableRow:
        lat = self.lat
        abl = self.ablation(i)
        return TableRow(
            id=i, density=percent(lat.n_active[i] / max(1, self.data.meta.n_tokens)),
            max=sig(lat.max_act[i]), top=", ".join(self.top_token_labels(i, 3)),
            explanation=self.explanations.get(i, ""),
            abl_mean=abl.mean if abl else "", abl_frac=abl.frac_helped if abl else "",
        )


def token_classes(act: float, peak: float, is_max: bool, dloss_milli: int) -> str:
    """CSS classes of one token: colour level, max marker, Δloss underline (order matters: JS
    builds the same string)."""
    classes = []
    lv = level(act, peak)
    if lv:
        classes.append(f"a{lv}")
    if is_max:
        classes.append("m")
    if dloss_milli >= DLOSS_MARK_MILLI:
        classes.append("p")
    elif dloss_milli <= -DLOSS_MARK_MILLI:
        classes.append("n")
    return " ".join(classes)


def _dloss_milli(dloss: np.ndarray, start: int, end: int) -> tuple[dict[int, int], int]:
    """Δloss per predicted-token position (t+1 <- dloss[t]) in 1e-3 nats, |Δ| < 0.01 dropped;
    outside [start, end) only the DLOSS_OUTSIDE largest. Returns them and the cutoff (the
    largest dropped |Δ| outside the window, 0 if none was dropped for the cap)."""
    milli = np.round(np.nan_to_num(dloss[:-1]) * 1000).astype(np.int64)
    positions = np.flatnonzero(np.abs(milli) >= DLOSS_MARK_MILLI) + 1
    inside = [int(p) for p in positions if start <= p < end]
    outside = sorted((int(p) for p in positions if not start <= p < end),
                     key=lambda p: (-abs(int(milli[p - 1])), p))
    kept, dropped = outside[:DLOSS_OUTSIDE], outside[DLOSS_OUTSIDE:]
    cutoff = max((abs(int(milli[p - 1])) for p in dropped), default=0)
    return {p: int(milli[p - 1]) for p in inside + kept}, cutoff


def _example_slices(data: StoreData) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Row order (latent, top-then-interval, interval, rank) and each latent's [lo, hi) slice."""
    ex = data.examples
    kind = np.array([0 if k == EXAMPLE_TOP else 1 for k in ex.kind], dtype=np.int64)
    order = np.lexsort((ex.rank, ex.interval, kind, ex.latent))
    latents = ex.latent[order]
    ids = np.arange(data.latents.d_sae)
    lo = np.searchsorted(latents, ids, side="left")
    hi = np.searchsorted(latents, ids, side="right")
    return order, [(int(a), int(b)) for a, b in zip(lo, hi, strict=True)]


def _partial_token_mask(vocab: Sequence[bytes]) -> np.ndarray:
    """True for vocab entries that are not whole UTF-8 text (they need neighbour merging)."""
    mask = np.zeros(max(1, len(vocab)), dtype=bool)
    for k, piece in enumerate(vocab):
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            mask[k] = True
    return mask


def _embed_subset(page: LatentPage) -> dict[str, Any]:
    return {"examples": page.top_examples[:EMBED_EXAMPLES],
            "logit_pos": page.logit_pos[:EMBED_LOGITS], "logit_neg": page.logit_neg[:EMBED_LOGITS]}


def _finite3(x: float) -> float | None:
    return round3(float(x)) if math.isfinite(float(x)) else None


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


# ---------------------------------------------------------------------------------------------
# environment, static files, site info


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


def site_info(data: StoreData) -> SiteInfo:
    meta = data.meta
    return SiteInfo(
        name="feature-browser", model=meta.model, sae=meta.sae,
        architecture=meta.sae_architecture, hook=meta.hook, corpus=meta.corpus,
        n_tokens=count(meta.n_tokens), n_seqs=count(meta.n_seqs), ctx=meta.ctx,
        created=meta.created, d_sae=meta.d_sae, ln_folded=meta.ln_folded,
        logit_direction=meta.logit_direction, has_ablation=meta.has_ablation,
        coact_method=meta.coact_method,
        settings=[(k, str(v)) for k, v in sorted(meta.settings.items())],
        versions=[(k, str(v)) for k, v in sorted(meta.versions.items())],
    )


__all__ = ["RenderReport", "load_explanations", "relative_url", "render_site", "resource_dir"]
