"""Faithful, safe display of tokens: raw vocabulary bytes in, escaped display segments out.

Tokens are corpus text, so every piece of it is untrusted and every piece is escaped. Beyond
escaping, a researcher must *see* what the model saw:

- whitespace is visible but unobtrusive: a newline becomes a muted `⏎` followed by a real line
  break, a tab a muted `→`, and spaces a muted `·` except a single space before a visible
  character (the ubiquitous ` the`), which stays a real space inside the token's box;
- control and format characters (NUL, RTL override U+202E, zero-width joiners, ...) become muted
  escapes such as `\\x00` or `\\u202e`, so they can neither hide text nor reorder it;
- byte-level BPE pieces that are not whole UTF-8 characters are merged with their neighbours when
  together they complete a character (the character is shown in the token where its first byte
  lies, the continuation tokens show nothing); bytes that never complete one show as `\\xNN`.

A token's display is a `Display`: a tuple of strings alternating normal text and muted markers,
starting with normal text (`("", "·", "self")` is a muted dot then "self"). The same encoding is
shipped to the browser (as a plain string when nothing is muted) so that JavaScript renders
expanded sequences exactly as Python renders the server-side context window.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from functools import lru_cache

from markupsafe import Markup, escape

Display = tuple[str, ...]
"""Alternating (normal, muted, normal, muted, ...) segments; see the module docstring."""

NEWLINE_MARK = "⏎"
TAB_MARK = "→"
SPACE_MARK = "·"
_NAMED_ESCAPES = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f"}
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_MAX_CHAR_BYTES = 4


# ---------------------------------------------------------------------------------------------
# bytes -> text pieces (UTF-8 merging across token boundaries)


def decode_sequence(pieces: Sequence[bytes]) -> list[list[str | int]]:
    """Per token, its decoded parts: `str` for decoded text, `int` for a byte that is no character.

    A character whose bytes span several tokens is attributed to the token holding its first byte.
    Fast path: a token that decodes on its own (almost all of them) is taken whole.
    """
    out: list[list[str | int]] = [[] for _ in pieces]
    i = 0
    while i < len(pieces):
        try:
            out[i].append(pieces[i].decode("utf-8"))
            i += 1
        except UnicodeDecodeError:
            i = _walk_bytes(pieces, i, out)
    return out


def _walk_bytes(pieces: Sequence[bytes], i: int, out: list[list[str | int]]) -> int:
    """Decode byte by byte from token i until a character boundary meets a token boundary.

    Returns the index of the first token not consumed.
    """
    buf, starts, last = bytes(pieces[i]), [0], i
    pos = 0
    while pos < len(buf):
        need = _utf8_length(buf[pos])
        while pos + need > len(buf) and last + 1 < len(pieces):
            last += 1
            starts.append(len(buf))
            buf += pieces[last]
        owner = i + bisect_right(starts, pos) - 1
        char = _strict_char(buf[pos:pos + need]) if need else None
        if char is None:
            out[owner].append(buf[pos])
            pos += 1
        else:
            out[owner].append(char)
            pos += need
    return last + 1


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte announces (0 for a byte that cannot lead)."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return _MAX_CHAR_BYTES
    return 0


def _strict_char(chunk: bytes) -> str | None:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------------------------
# text pieces -> Display


def display_parts(parts: Sequence[str | int]) -> Display:
    """The display segments of one token's decoded parts (see `decode_sequence`)."""
    builder = _SegmentBuilder()
    for part in parts:
        if isinstance(part, int):
            builder.add(f"\\x{part:02x}", muted=True)
        else:
            _add_text(builder, part)
    return builder.result()


def _add_text(builder: _SegmentBuilder, text: str) -> None:
    for k, char in enumerate(text):
        if char == " ":
            marked = _space_is_marked(text, k)
            builder.add(SPACE_MARK if marked else " ", muted=marked)
        elif char == "\n":
            builder.add(NEWLINE_MARK, muted=True)
        elif char == "\t":
            builder.add(TAB_MARK, muted=True)
        elif _needs_escape(char):
            builder.add(_escape_char(char), muted=True)
        else:
            builder.add(char, muted=False)


def _space_is_marked(text: str, k: int) -> bool:
    """A space stays plain only when single and followed by a visible character (` the`, `a b`).

    Every other space (runs such as indentation, trailing spaces, a lone space token) shows as a
    muted `·`, so whitespace tokens never look empty. Plain single spaces keep prose readable and
    pages small (most tokens of a byte-level BPE start with one).
    """
    if k == len(text) - 1 or text[k + 1].isspace():
        return True
    return k > 0 and text[k - 1].isspace()


@lru_cache(maxsize=4096)
def _needs_escape(char: str) -> bool:
    if char.isspace() and char != " ":
        return True
    return unicodedata.category(char) in _ESCAPED_CATEGORIES


def _escape_char(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class _SegmentBuilder:
    """Collects characters into alternating normal/muted segments."""

    def __init__(self) -> None:
        self.segments: list[str] = [""]

    def add(self, text: str, muted: bool) -> None:
        current_is_muted = len(self.segments) % 2 == 0
        if current_is_muted != muted:
            self.segments.append("")
        self.segments[-1] += text

    def result(self) -> Display:
        return tuple(self.segments)


# ---------------------------------------------------------------------------------------------
# public helpers: whole sequences, single tokens, HTML and JSON forms


class TokenText:
    """Displays for a vocabulary: per token id (cached) and per sequence (with byte merging)."""

    def __init__(self, vocab: Sequence[bytes]) -> None:
        self.vocab = vocab
        self._single: dict[int, Display] = {}

    def token(self, token_id: int) -> Display:
        """One token on its own (logit tables, top tokens): partial bytes show as `\\xNN`."""
        token_id = int(token_id)
        if token_id not in self._single:
            self._single[token_id] = display_parts(decode_sequence([self._bytes(token_id)])[0])
        return self._single[token_id]

    def sequence(self, ids: Sequence[int]) -> list[Display]:
        """A run of tokens, merging partial UTF-8 pieces that complete a character together."""
        ids = [int(t) for t in ids]
        pieces = [self._bytes(t) for t in ids]
        if all(_is_whole(p) for p in pieces):
            return [self.token(t) for t in ids]
        return [display_parts(parts) for parts in decode_sequence(pieces)]

    def plain(self, token_id: int) -> str:
        """Decoded text of one token for search terms (undecodable bytes dropped)."""
        return self._bytes(int(token_id)).decode("utf-8", errors="ignore")

    def _bytes(self, token_id: int) -> bytes:
        if 0 <= token_id < len(self.vocab):
            return self.vocab[token_id]
        return f"<unk {token_id}>".encode()


@lru_cache(maxsize=65536)
def _is_whole(piece: bytes) -> bool:
    return _strict_char(piece) is not None


def display_html(display: Display) -> Markup:
    """Escaped HTML of a display: muted segments in `<b>` (styled muted), newlines as `<br>`."""
    html = []
    for k, segment in enumerate(display):
        if not segment:
            continue
        html.append(f"<b>{escape(segment)}</b>" if k % 2 else str(escape(segment)))
    return Markup("".join(html))


def line_breaks(display: Display) -> int:
    """How many real line breaks follow the token: one per newline it contains."""
    return sum(segment.count(NEWLINE_MARK) for segment in display[1::2])


@lru_cache(maxsize=1 << 16)
def token_html(display: Display, classes: str = "", breaks: bool = True,
               bare: bool = False) -> str:
    """One token element of a context line: `<i class=..>display</i>` then its line breaks
    (`breaks=False` in table cells, where the `⏎` marker alone says it). With `bare`, a token
    without classes is written as bare escaped text (no element).

    Classes are simple identifiers chosen by the renderer (never corpus text), so they are written
    unquoted when single. Cached: a view's pages repeat the same tokens thousands of times.
    """
    tail = "<br>" * (line_breaks(display) if breaks else 0)
    if bare and not classes:
        return str(display_html(display)) + tail
    if not classes:
        attr = ""
    elif " " in classes:
        attr = f' class="{classes}"'
    else:
        attr = f" class={classes}"
    return f"<i{attr}>{display_html(display)}</i>{tail}"


def display_json(display: Display) -> str | list[str]:
    """Compact JSON form for the browser: a plain string when nothing is muted."""
    return display[0] if len(display) == 1 else list(display)


def display_text(display: Display) -> str:
    """All segments joined (markers included): for titles, descriptions and search labels."""
    return "".join(display)
