"""Header text decoding: RFC 2047 words, 8-bit bytes, and text without CR/LF (CVE-2024-6923)."""

from __future__ import annotations

import pytest

from ingest.headers import (
    clean_text,
    decode_bytes,
    decode_text,
    decode_words,
    raw_value,
    recover_8bit,
    unfold,
    unfold_raw,
)

UNSAFE = ("\r", "\n", "\x00", "\u2028", "\x85")


def test_decode_words_joins_adjacent_words() -> None:
    """Whitespace between encoded words goes; a character split across two words survives."""
    assert decode_words("=?utf-8?q?a?= =?utf-8?q?b?= c", set()) == "ab c"
    assert decode_words("=?utf-8?b?w6k=?=\t=?utf-8?q?=C3?= =?utf-8?q?=A9?=", set()) == "éé"
    assert decode_words("x =?ISO-8859-1*fr?Q?caf=E9?= y", set()) == "x café y"


@pytest.mark.timeout(120)  # a hang guard, not a speed check
def test_decode_words_is_linear() -> None:
    """A megabyte of encoded words decodes in well under a second per run."""
    assert decode_words("=?utf-8?q?a?= " * 80_000, set()) == "a" * 80_000 + " "


def test_decode_words_reports_bad_words() -> None:
    """Unknown charsets and broken base64 are reported, never raised."""
    defects: set[str] = set()
    assert decode_words("=?x-bogus?q?caf=C3=A9?= =?utf-8?b?QUJDR?=", defects) == (
        "café =?utf-8?b?QUJDR?="
    )
    assert defects == {"unknown-charset", "invalid-encoded-word"}


@pytest.mark.parametrize("unsafe", [*UNSAFE, "\x0b", "\x0c", "\u2029"])
def test_clean_text_replaces_line_breaks(unsafe: str) -> None:
    """Every character that could end a header line becomes a space, reported."""
    defects: set[str] = set()
    assert clean_text(f"a{unsafe}b", defects) == "a b"
    assert defects == {"header-crlf"}


def test_clean_text_replaces_lone_surrogates() -> None:
    """A lone surrogate never survives: escaped bytes are decoded, others become U+FFFD."""
    assert clean_text("caf\udcc3\udca9 \ud800", set()) == "café \ufffd"


def test_recover_8bit() -> None:
    """Raw header bytes read as UTF-8, as damaged UTF-8, or else as cp1252, flagged."""
    as_text = "caf\udcc3\udca9".encode("ascii", "surrogateescape").decode(
        "ascii", "surrogateescape"
    )
    assert recover_8bit(as_text, set()) == "café"
    defects: set[str] = set()
    assert recover_8bit("caf\udce9", defects) == "café"
    assert recover_8bit("\udcd1\udc87\udcd1", defects) == "ч\ufffd"
    assert defects == {"header-not-utf8"}


def test_unfold_keeps_only_real_folding() -> None:
    """A line break before a space or tab is folding; any other one is left to be reported."""
    assert unfold("a\r\n b\n\tc", set()) == "a b\tc"
    assert decode_text("a\r\nb", set()) == "a  b"


def test_decode_bytes_falls_back_from_a_wrong_or_unsafe_charset() -> None:
    """A wrong charset falls back to UTF-8, then cp1252; an unsafe one is never used."""
    defects: set[str] = set()
    assert decode_bytes(b"caf\xc3\xa9", "us-ascii", defects) == "café"
    assert decode_bytes(b"caf\xe9", None, defects) == "café"
    assert defects == {"charset-mismatch"}
    assert decode_bytes(b"abc-", "punycode", defects) == "abc-"
    assert "unknown-charset" in defects


def test_raw_value_shows_the_field_as_written() -> None:
    """UTF-8 reads as text; other bytes and control characters become escapes; tab stays."""
    as_parsed = "caf\udcc3\udca9 \udce9\tx\x00y\r\nz\u2028"
    assert raw_value(as_parsed) == "café \\xe9\tx\\x00y\\x0d\\x0az\\u2028"
    assert raw_value("=?utf-8?q?a?=") == "=?utf-8?q?a?="
    assert raw_value("\ud800") == "\ufffd"  # a surrogate no parser produces


def test_unfold_raw_keeps_bytes_escaped() -> None:
    """Folding goes; 8-bit bytes stay as the parser's escapes for raw_value to show."""
    assert unfold_raw("a\r\n b\udce9") == "a b\udce9"
