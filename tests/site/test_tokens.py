"""generator.site.tokens: faithful and safe token display (never mojibake, always escaped)."""

from __future__ import annotations

from generator.site.tokens import (
    TokenText,
    decode_sequence,
    display_html,
    display_json,
    display_text,
    token_html,
)


def test_whole_tokens_decode_alone() -> None:
    assert decode_sequence([b" the", "中文".encode(), "😀".encode()]) == [[" the"], ["中文"], ["😀"]]


def test_partial_utf8_merges_into_the_token_holding_the_first_byte() -> None:
    text = TokenText([b"\xe2\x82", b"\xac", b" x"])
    assert text.sequence([0, 1, 2]) == [("€",), ("",), (" x",)]


def test_emoji_split_over_four_tokens_merges() -> None:
    pieces = [bytes([b]) for b in "😀".encode()]
    assert [display_text(d) for d in TokenText(pieces).sequence(range(4))] == ["😀", "", "", ""]


def test_bytes_that_never_complete_show_as_escapes() -> None:
    text = TokenText([b"\xe2\x82", b"a", b"\xff"])
    assert text.sequence([0, 1, 2]) == [("", "\\xe2\\x82"), ("a",), ("", "\\xff")]
    assert text.token(0) == ("", "\\xe2\\x82")  # a lone partial token in a table


def test_valid_prefix_then_partial_tail_keeps_text_in_place() -> None:
    text = TokenText([b"ab\xe2\x82", b"\xaccd"])
    assert text.sequence([0, 1]) == [("ab€",), ("cd",)]


def test_whitespace_is_visible_but_muted() -> None:
    text = TokenText([b" the", b"\n\n", b"\tx", b"    ", b" ", b"a b", b"x  y", b"end "])
    displays = text.sequence(range(8))
    assert displays[0] == (" the",)  # the ubiquitous leading space stays a real space
    assert displays[1] == ("", "⏎⏎")
    assert displays[2] == ("", "→", "x")
    assert displays[3] == ("", "····")
    assert displays[4] == ("", "·")
    assert displays[5] == ("a b",)
    assert displays[6] == ("x", "··", "y")
    assert displays[7] == ("end", "·")


def test_newlines_become_marker_plus_real_break() -> None:
    display = TokenText([b"a\nb"]).token(0)
    assert token_html(display) == "<i>a<b>⏎</b>b</i><br>"
    assert token_html(display, breaks=False) == "<i>a<b>⏎</b>b</i>"
    assert token_html(display, bare=True) == "a<b>⏎</b>b<br>"


def test_control_and_format_characters_are_escaped() -> None:
    text = TokenText([b"a\x00b", "\u202eevil".encode(), "x\u200by".encode(), b"\r", b"\x1b[0m"])
    assert text.token(0) == ("a", "\\x00", "b")
    assert text.token(1) == ("", "\\u202e", "evil")
    assert text.token(2) == ("x", "\\u200b", "y")
    assert text.token(3) == ("", "\\r")
    assert text.token(4) == ("", "\\x1b", "[0m")


def test_html_is_always_escaped() -> None:
    text = TokenText([b"</script>", b"<img src=x onerror=alert(1)>", b"\"q' &amp;"])
    html = "".join(token_html(text.token(k), "a1") for k in range(3))
    assert "<img" not in html and "</script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#34;q&#39; &amp;amp;" in html


def test_classes_quoted_only_when_needed() -> None:
    display = ("x",)
    assert token_html(display, "a3") == "<i class=a3>x</i>"
    assert token_html(display, "a3 m p") == '<i class="a3 m p">x</i>'


def test_json_form_is_compact() -> None:
    assert display_json(("the",)) == "the"
    assert display_json(("", "·", "x")) == ["", "·", "x"]
    assert str(display_html(("a", "·", "<"))) == "a<b>·</b>&lt;"


def test_unknown_ids_do_not_crash() -> None:
    assert display_text(TokenText([b"a"]).token(7)) == "<unk 7>"
