"""Link cards: one 1200 x 630 PNG per latent (`cards/<id>.png`), the `og:image` / `twitter:image`
of its page when the site is rendered with `--site-url` (link previews in blogs, Slack, X).

A card shows the latent's id, its explanation (or, without one, what it fires on and promotes),
density / max / active positions, its activation histogram coloured by interval (as on the page)
and its top tokens (or, without them, the tokens it promotes). Pure: a `Card` (plain strings and
numbers, built by generator.site.builder) in, PNG bytes out; Pillow only, no network.

Text is drawn as text: Pillow interprets no markup, and token strings arrive as the page's
escaped displays (control and format characters already written as `\\x00`, `\\u202e`, ...);
explanations and names get the same treatment here. The font is DejaVu Sans Mono, bundled
(generator/site/fonts/, Bitstream Vera licence); characters it lacks (CJK, emoji) draw as its
missing-glyph box, which the page itself shows properly. Layout is Pillow's basic engine (no
bidi reordering, no shaping), so the same inputs give the same bytes on every machine with the
same Pillow.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1200, 630
"""the size link previews (Open Graph, X's summary_large_image) ask for."""
FONT = Path(__file__).resolve().parent / "fonts" / "DejaVuSansMono.ttf"
MARGIN = 56

BG = (255, 255, 255)
FG = (31, 35, 40)
MUTED = (110, 119, 129)
LINE = (208, 215, 222)
TOKEN = (255, 120, 0)
"""the activation colour of static/style.css (--tok, light scheme)."""


@dataclass(frozen=True)
class Card:
    """What one latent's card shows, already formatted for people."""

    id: int
    label: str
    """the explanation, else the page's summary ("fires on ...; promotes ...")."""
    context: str
    """the SAE and hook, drawn above the id."""
    stats: str
    """"density 0.12% · max 3.25 · 1,234 active"."""
    hist: Sequence[int]
    """activation histogram counts (empty for a dead latent)."""
    alphas: Sequence[float]
    """per bin, the opacity of the activation colour (its interval's colour on the page)."""
    hist_labels: tuple[str, str]
    """under the histogram's left and right ends."""
    tokens_title: str
    """"Top tokens" or "Promotes"."""
    tokens: Sequence[tuple[Sequence[str], str]]
    """(display segments, alternating normal and muted as in generator.site.tokens, value)."""
    footer: str
    """the site's address, drawn at the bottom."""
    dead_note: str = ""
    """said in place of the histogram when the latent never fired."""


def card_png(card: Card) -> bytes:
    """The card as PNG bytes (deterministic)."""
    canvas = _Canvas()
    fonts = _fonts()
    small, right = fonts["small"], WIDTH - MARGIN

    canvas.rect((0, 0, 11, HEIGHT - 1), _tint(0.88))
    canvas.text((MARGIN, 36), _clip(one_line(card.context), small, right - MARGIN), small, MUTED)
    canvas.text((MARGIN, 70), f"Latent {int(card.id)}", fonts["title"], FG, bold=True)
    y = 152
    for line in _wrap(one_line(card.label), fonts["label"], right - MARGIN, 2):
        canvas.text((MARGIN, y), line, fonts["label"], FG)
        y += 42
    canvas.text((MARGIN, 248), _clip(one_line(card.stats), small, right - MARGIN), small, MUTED)

    # activation histogram, bottom left
    left, top, hist_right, base = MARGIN, 338, 700, 530
    canvas.text((left, 300), "Activations (tokens per bin)", small, MUTED)
    if card.hist and max(card.hist) > 0:
        n, peak = len(card.hist), max(card.hist)
        for k, c in enumerate(card.hist):
            if c <= 0:
                continue
            x0 = left + round(k * (hist_right - left) / n)
            x1 = left + round((k + 1) * (hist_right - left) / n) - 1
            h = max(2, round((base - top) * c / peak))
            canvas.rect((x0, base - h, max(x0, x1), base - 1), _tint(card.alphas[k]))
        canvas.rect((left, base, hist_right, base + 1), LINE)
        canvas.text((left, base + 8), _clip(one_line(card.hist_labels[0]), small, 280), small,
                    MUTED)
        label = _clip(one_line(card.hist_labels[1]), small, 280)
        canvas.text((hist_right - small.getlength(label), base + 8), label, small, MUTED)
    else:
        for n_line, line in enumerate(_wrap(one_line(card.dead_note), small, hist_right - left,
                                            3)):
            canvas.text((left, top + 20 + 34 * n_line), line, small, MUTED)

    # top tokens, bottom right
    col = 760
    canvas.text((col, 300), _clip(one_line(card.tokens_title), small, right - col), small, MUTED)
    token_font = fonts["token"]
    y = 340
    for segments, value in card.tokens[:6]:
        value = _clip(one_line(value), token_font, 160)
        width = token_font.getlength(value)
        canvas.text((right - width, y), value, token_font, MUTED)
        canvas.token((col, y), [safe_text(s) for s in segments], token_font,
                     right - col - width - 20)
        y += 38

    canvas.text((MARGIN, HEIGHT - 44), _clip(one_line(card.footer), small, 680), small, MUTED)
    canvas.text((right - small.getlength("feature-browser"), HEIGHT - 44), "feature-browser",
                small, MUTED)
    return canvas.png()


# ---------------------------------------------------------------------------------------------
# drawing: an indexed-colour canvas


RAMP = 5
"""antialiasing levels of a text colour over its background (palette entries per pair)."""


class _Canvas:
    """A palette image drawn directly, as a numpy array of palette indices: flat fills take one
    palette entry each, text its antialiasing ramp from its background to its colour. An 8-bit
    PNG of a card encodes in a few milliseconds, against ~15 ms and 3x the bytes for RGB (whose
    adaptive row filters dominate), and needs no quantising pass."""

    def __init__(self) -> None:
        self.pixels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)  # palette indices, 0 = BG
        self.palette: list[tuple[int, int, int]] = [BG]
        self.index: dict[tuple[int, int, int], int] = {BG: 0}
        self.ramps: dict[tuple[tuple[int, int, int], tuple[int, int, int]], np.ndarray] = {}

    def colour(self, rgb: tuple[int, int, int]) -> int:
        if rgb not in self.index:
            if len(self.palette) == 256:  # (never with the cards' few colours) the nearest
                return min(range(256), key=lambda k: sum((a - b) ** 2 for a, b in
                                                         zip(self.palette[k], rgb, strict=True)))
            self.index[rgb] = len(self.palette)
            self.palette.append(rgb)
        return self.index[rgb]

    def rect(self, box: tuple[float, float, float, float], rgb: tuple[int, int, int],
             radius: int = 0) -> None:
        """Fill [x0, x1] x [y0, y1] (inclusive), corners cut by `radius` pixels."""
        x0, y0, x1, y1 = (round(v) for v in box)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(WIDTH - 1, x1), min(HEIGHT - 1, y1)
        if x1 < x0 or y1 < y0:
            return
        colour = self.colour(rgb)
        self.pixels[y0:y1 + 1, x0:x1 + 1] = colour
        for k in range(min(radius, (x1 - x0) // 2, (y1 - y0) // 2)):  # a 45-degree cut
            cut = radius - k
            for y in (y0 + k, y1 - k):
                self.pixels[y, x0:x0 + cut] = self.pixels[y, x1 - cut + 1:x1 + 1] = 0

    def ramp(self, fg: tuple[int, int, int], bg: tuple[int, int, int]) -> np.ndarray:
        """A lookup table: glyph coverage 0..255 -> palette index (entry 0 unused)."""
        key = (fg, bg)
        if key not in self.ramps:
            steps = [self.colour(_mix(fg, bg, k / RAMP)) for k in range(1, RAMP + 1)]
            self.ramps[key] = np.array([0] + [steps[-(-v * RAMP // 255) - 1]
                                              for v in range(1, 256)], dtype=np.uint8)
        return self.ramps[key]

    def text(self, xy: tuple[float, float], text: str, font: ImageFont.FreeTypeFont,
             fg: tuple[int, int, int], bg: tuple[int, int, int] = BG, bold: bool = False) -> None:
        """`text` with its top-left at xy, antialiased over `bg`."""
        text = safe_text(text)  # (callers pass it escaped already: this is a guard)
        if not text:
            return
        drawn = _glyphs(text, font, 1 if bold else 0)
        if drawn is None:
            return
        x0, y0, cover = drawn
        left, top = round(xy[0]) + x0, round(xy[1]) + y0
        # the part inside the card
        c0, r0 = max(0, -left), max(0, -top)
        c1, r1 = min(cover.shape[1], WIDTH - left), min(cover.shape[0], HEIGHT - top)
        if c1 <= c0 or r1 <= r0:
            return
        cover = cover[r0:r1, c0:c1]
        target = self.pixels[top + r0:top + r1, left + c0:left + c1]
        np.copyto(target, self.ramp(fg, bg)[cover], where=cover > 0)

    def token(self, xy: tuple[float, float], segments: Sequence[str],
              font: ImageFont.FreeTypeFont, width: float) -> None:
        """A token on a tinted box, muted segments (whitespace markers) in grey; clipped to
        `width` pixels."""
        x, y = xy
        pieces: list[tuple[str, tuple[int, int, int]]] = []
        used, room = 0.0, width - 16
        for k, segment in enumerate(segments):
            if not segment:
                continue
            length = font.getlength(segment)
            if used + length > room:
                segment = _clip(segment, font, room - used)
                pieces.append((segment, MUTED if k % 2 else FG))
                used += font.getlength(segment)
                break
            pieces.append((segment, MUTED if k % 2 else FG))
            used += length
        box = _tint(0.27)
        self.rect((x, y - 3, x + used + 16, y + 31), box, radius=3)
        x += 8
        for segment, colour in pieces:
            self.text((x, y), segment, font, colour, box)
            x += font.getlength(segment)

    def png(self) -> bytes:
        image = Image.frombytes("P", (WIDTH, HEIGHT), self.pixels.tobytes())
        image.putpalette([c for rgb in self.palette for c in rgb])
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=6)
        return out.getvalue()


# ---------------------------------------------------------------------------------------------
# text


def safe_text(text: str) -> str:
    """Text with control and format characters (NUL, newlines, RTL overrides, zero-width joiners,
    surrogates, ...) and whitespace other than the space written as visible escapes, as
    generator.site.tokens does for tokens, so that nothing can hide or reorder what a card shows; an
    already-escaped token display passes through unchanged."""
    return "".join(_escape(char) if _hidden(char) else char for char in text)


def one_line(text: str) -> str:
    """An explanation or name for one run of card text: whitespace runs as single spaces."""
    return safe_text(" ".join(text.split()))


_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _hidden(char: str) -> bool:
    return (char.isspace() and char != " ") or unicodedata.category(char) in _HIDDEN


def _escape(char: str) -> str:
    code = ord(char)
    return (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
            else f"\\U{code:08x}")


@cache
def _fonts() -> dict[str, ImageFont.FreeTypeFont]:
    """Loaded once per process (page workers load their own after the fork)."""
    def font(size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(str(FONT), size, layout_engine=ImageFont.Layout.BASIC)

    return {"title": font(58), "label": font(32), "small": font(22), "token": font(26)}


def _clip(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """`text` cut to `width` pixels, with an ellipsis when cut."""
    if font.getlength(text) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid] + "…") <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…"


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap into at most `max_lines` lines, the last clipped with an ellipsis; a
    word longer than a line is cut."""
    words = text.split(" ")
    lines: list[str] = []
    line = ""
    for n, word in enumerate(words):
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while font.getlength(line) > width and len(lines) < max_lines - 1:
            cut = len(_clip(line, font, width)) - 1
            lines.append(line[:max(1, cut)])
            line = line[max(1, cut):]
        if len(lines) == max_lines - 1:
            rest = " ".join([line, *words[n + 1:]])
            lines.append(_clip(rest, font, width))
            return lines
    if line:
        lines.append(line)
    return lines[:max_lines]


@lru_cache(maxsize=2048)
def _glyphs(text: str, font: ImageFont.FreeTypeFont,
            stroke: int) -> tuple[int, int, np.ndarray] | None:
    """The coverage (0..255) of `text` drawn at the origin, and its offset; cached, since every
    card repeats its captions and the SAE's name, and tokens recur across latents."""
    x0, y0, x1, y1 = (int(v) for v in font.getbbox(text, stroke_width=stroke))
    if x1 <= x0 or y1 <= y0:
        return None
    glyphs = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(glyphs).text((-x0, -y0), text, font=font, fill=255, stroke_width=stroke,
                                stroke_fill=255)
    cover = np.asarray(glyphs)
    cover.flags.writeable = False
    return x0, y0, cover


def _tint(alpha: float) -> tuple[int, int, int]:
    """The activation colour at opacity `alpha` over the white background."""
    return _mix(TOKEN, BG, alpha)


def _mix(fg: tuple[int, int, int], bg: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    """`fg` at opacity t over `bg`."""
    r, g, b = (round(c0 + (c1 - c0) * t) for c1, c0 in zip(fg, bg, strict=True))
    return r, g, b


__all__ = ["HEIGHT", "WIDTH", "Card", "card_png", "one_line", "safe_text"]
