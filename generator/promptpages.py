"""The prompt view's pages, from a store's `Prompts` (generator/prompts.py): pure, no torch.

    prompts/index.html   every prompt: its text (clipped), length, top latents
    prompts/<n>.html     prompt n: every token (hover or select one to see its top latents),
                         and a table of the latents most active over the whole prompt

A prompt page server-renders its tokens (one `<i>` per position, BOS as the muted BOS marker,
escaped by generator.tokens like every token of the site) and its latent table; its data is one
JSON blob in a `<script type=application/json>` (escaped for a script context: no `<`, `>`,
`&`), read by static/prompt.js, so the page works from file:// and fetches nothing:

    t  per position: [] at BOS, else up to PROMPT_TOP [latent, activation, Δloss] by activation
       (ties to the lower id); Δloss is of predicting the next token with the latent removed at
       every non-BOS position of the prompt, null where undefined (last position, BOS next)
    l  per position: the clean loss of predicting the next token (null where undefined)
    a  {latent: [position, activation, ...]} every active position of each latent the page names
    n  {latent: [label, max activation over the corpus]} the label (explanation or top tokens)
       and the colour scale (activation / max, as on latent pages)
    r  per table row, in page order: its rank by max activation, by total activation and by
       total |Δloss| among all the latents active on the prompt (0 = first; ties to the lower id)
    k  PROMPT_LIST: the table shows the k first rows of the chosen order

The table holds the union of the PROMPT_LIST best latents by each of the three orders, so each
order's top PROMPT_LIST is exact; rows outside the current order's top are `hidden`. Numbers in
the blob and on the page have 3 significant digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from markupsafe import Markup

from generator.charts import count, round3, sig, signed
from generator.pages import BOS_HTML, _clip, _script_json
from generator.store import Prompts, StoreData
from generator.tokens import display_html, display_parts, display_text, token_html

if TYPE_CHECKING:
    from generator.render import _SiteWriter

PROMPT_TOP = 10
"""latents listed per token (the most active there)."""
PROMPT_LIST = 50
"""latents listed per order in a prompt's table (max, total activation, total |Δloss|)."""
ORDERS = ("max activation", "total activation", "total |Δloss|")


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


class PromptPages:
    """Page contexts of the prompt view (labels and token text from the site's PageBuilder)."""

    def __init__(self, data: StoreData, label: Any, text: Any) -> None:
        assert data.prompts is not None
        self.data, self.p, self.label, self.text = data, data.prompts, label, text
        p = self.p
        n = len(p)
        self._entries = np.searchsorted(p.prompt, np.arange(n + 1))
        self._summary = np.searchsorted(p.s_prompt, np.arange(n + 1))
        self.bos_id = data.meta.bos_id

    def ranks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(latents, their ranks [m, 3]) of prompt n's summary rows, by each order; ties to the
        lower id (the rows are sorted by latent)."""
        p = self.p
        lo, hi = self._summary[n], self._summary[n + 1]
        latents = p.s_latent[lo:hi]
        ranks = np.zeros((hi - lo, 3), dtype=np.int64)
        for k, key in enumerate((p.s_max_act, p.s_sum_act, p.s_sum_abs_dloss)):
            order = np.lexsort((latents, -np.asarray(key[lo:hi], dtype=np.float64)))
            ranks[order, k] = np.arange(hi - lo)
        return latents, ranks

    def page(self, n: int) -> PromptPage:
        p = self.p
        tokens = np.asarray(p.tokens[n])
        lo, hi = self._entries[n], self._entries[n + 1]
        pos, latent = p.pos[lo:hi], p.latent[lo:hi]
        act, dloss = p.act[lo:hi], p.dloss[lo:hi]
        # per position, its PROMPT_TOP latents by activation (ties to the lower id)
        order = np.lexsort((latent, -act.astype(np.float64), pos))
        per_pos: list[list[list[Any]]] = [[] for _ in range(len(tokens))]
        for e in order.tolist():
            slot = per_pos[int(pos[e])]
            if len(slot) < PROMPT_TOP:
                slot.append([int(latent[e]), round3(float(act[e])), _finite3(float(dloss[e]))])
        # the table: the union of each order's top PROMPT_LIST, in order of max activation
        s_lo = self._summary[n]
        latents, ranks = self.ranks(n)
        keep = np.flatnonzero((ranks < PROMPT_LIST).any(axis=1))
        keep = keep[np.argsort(ranks[keep, 0], kind="stable")]
        rows = [PromptRow(int(latents[j]), self.label(int(latents[j])),
                          sig(float(p.s_max_act[s_lo + j])), sig(float(p.s_sum_act[s_lo + j])),
                          sig(float(p.s_sum_abs_dloss[s_lo + j])),
                          count(int(p.s_n_active[s_lo + j])), bool(ranks[j, 0] >= PROMPT_LIST))
                for j in keep.tolist()]
        named = sorted({int(x) for x in latents[keep]} |
                       {e[0] for slot in per_pos for e in slot})
        acts: dict[str, list[float]] = {}
        for e in np.flatnonzero(np.isin(latent, named)).tolist():  # by position
            acts.setdefault(str(int(latent[e])), []).extend([int(pos[e]), round3(float(act[e]))])
        max_act = self.data.latents.max_act
        blob = {
            "t": per_pos,
            "l": [_finite3(float(x)) for x in p.loss[n]],
            "a": acts,
            "n": {str(i): [self.label(i), round3(float(max_act[i]))] for i in named},
            "r": [[int(x) for x in ranks[j]] for j in keep.tolist()],
            "k": PROMPT_LIST,
        }
        text = display_parts([p.text[n]])
        title = f"Prompt {n}: {_clip(display_text(display_parts([_clip(p.text[n], 80)])), 60)}"
        meta = self.data.meta
        return PromptPage(
            n=n, title=title,
            description=_clip(f"What fires on each token of prompt {n}, for {meta.sae} "
                              f"({meta.hook}) on {meta.model}: {display_text(text)}", 200),
            text_html=display_html(text), tokens_html=self.tokens_html(tokens),
            n_tokens=len(tokens), truncated=bool(p.truncated[n]), rows=rows,
            n_active=len(latents), blob=_script_json(blob),
            prev=n - 1 if n > 0 else None, next=n + 1 if n + 1 < len(p) else None)

    def tokens_html(self, tokens: np.ndarray) -> Markup:
        """One element per position: the BOS marker, or the token's escaped display."""
        displays = self.text.sequence(tokens.tolist())
        return Markup("".join(BOS_HTML if t == self.bos_id else token_html(d)
                              for t, d in zip(tokens.tolist(), displays, strict=True)))

    def index(self) -> PromptIndex:
        p, meta = self.p, self.data.meta
        entries = []
        for n in range(len(p)):
            latents, ranks = self.ranks(n)
            top = latents[np.argsort(ranks[:, 0])[:3]].tolist()
            entries.append(PromptEntry(
                n=n, text_html=display_html(display_parts([_clip_raw(p.text[n], 160)])),
                n_tokens=count(len(p.tokens[n])), truncated=bool(p.truncated[n]),
                top=[(int(i), self.label(int(i))) for i in top]))
        return PromptIndex(
            title=f"Prompts: {meta.sae} on {meta.model}",
            description=(f"What fires on each token of {count(len(p))} prompts, for {meta.sae} "
                         f"({meta.hook}) on {meta.model}."),
            prompts=entries)


def _finite3(x: float) -> float | None:
    return round3(x) if math.isfinite(x) else None


def _clip_raw(text: str, n: int) -> str:
    """The first n characters (whitespace kept: the display shows it), … when cut."""
    return text if len(text) <= n else text[: n - 1] + "…"


def write_prompt_pages(writer: _SiteWriter) -> None:
    """prompts/<n>.html for every prompt and prompts/index.html (module docstring)."""
    from generator.render import PageLinks

    prompts: Prompts | None = writer.data.prompts
    if prompts is None:
        return
    pages = PromptPages(writer.data, writer.pages.short_label, writer.pages.text)
    (writer.out / "prompts").mkdir(parents=True, exist_ok=True)

    def links(path: str) -> PageLinks | None:
        return PageLinks(writer.site_url + path) if writer.site_url else None

    for n in range(len(prompts)):
        path = f"prompts/{n}.html"
        writer.render(path, "prompt.html", page=pages.page(n), orders=ORDERS, links=links(path))
    writer.render("prompts/index.html", "prompts.html", page=pages.index(),
                  links=links("prompts/index.html"))


__all__ = ["ORDERS", "PROMPT_LIST", "PROMPT_TOP", "PromptPages", "signed", "write_prompt_pages"]
