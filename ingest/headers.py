"""Decode header text safely: unfolding, 8-bit bytes, RFC 2047 words, charsets, no CR/LF/NUL.

``decode_bytes`` (declared charset, then UTF-8, then lossy) also decodes bodies for
``ingest.bodies``, ``note_defects`` records the stdlib parsers' defect objects as data, and
``raw_value`` shows a field body as written, for the documents' ``headers[].raw``.

CVE-2024-6923 (header folding does not quote CR/LF), unfixed in this interpreter (3.11.7):
an RFC 2047 word can decode to CR, LF or NUL, and whoever re-serialises that text injects
headers. ``clean_text`` replaces each (and the other characters ``str.splitlines`` breaks at)
by a space and records the ``header-crlf`` defect.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterable

_FOLD = re.compile(r"[\r\n]+(?=[ \t])")
_UNSAFE = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_ESCAPED_BYTES = re.compile(r"[\udc80-\udcff]+")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
# What raw_value escapes: controls other than tab, and the characters that break lines.
_RAW_ESCAPED = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# Text codecs that are quadratic (punycode), refuse errors="replace" (idna) or can emit lone
# surrogates (the escape codecs): no honest mail declares them.
_UNSAFE_CODECS = frozenset({"idna", "punycode", "raw-unicode-escape", "unicode-escape"})
# Charset labels mailers use for a superset, mapped to it as the WHATWG Encoding Standard does;
# the first three are labels Python does not know.
_SUPERSETS = {"x-gbk": "gb18030", "windows-874": "cp874", "x-sjis": "cp932", "gb2312": "gb18030"}
_SUPERSETS |= {"gbk": "gb18030", "euc_kr": "cp949", "iso8859-1": "cp1252", "big5": "big5hkscs"}
_SUPERSETS |= {"iso8859-9": "cp1254", "tis-620": "cp874", "shift_jis": "cp932"}


def unfold(value: str, defects: set[str]) -> str:
    """A raw header value unfolded, its 8-bit bytes decoded; RFC 2047 words stay encoded.

    Only a line break followed by a space or tab is folding; any other CR or LF is left
    for ``clean_text`` to replace and report.
    """
    return recover_8bit(unfold_raw(value), defects)


def unfold_raw(value: str) -> str:
    """A header value as the parser holds it (8-bit bytes as surrogate escapes), unfolded."""
    return _FOLD.sub("", value)


def raw_value(value: str) -> str:
    """An unfolded field body as written: UTF-8 decoded, any other byte and any control
    character (tab aside) shown as a ``\\xNN`` escape, so it is always valid, one-line JSON.
    """
    if not value.isascii():
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that is no escaped byte: not from a parser
            data = replace_surrogates(value).encode("utf-8")
        value = data.decode("utf-8", "backslashreplace")
    if _RAW_ESCAPED.search(value) is None:
        return value
    return _RAW_ESCAPED.sub(_escape_char, value)


def decode_text(value: str, defects: set[str]) -> str:
    """An unfolded header value with its RFC 2047 words decoded, made safe by clean_text."""
    return clean_text(decode_words(value, defects), defects)


def decode_words(text: str, defects: set[str]) -> str:
    """Decode the RFC 2047 encoded words in unstructured text, in linear time.

    Our own decoder: the stdlib's copies the rest of the header at every word, which is
    quadratic (a 200 KiB subject took 0.3 s). Whitespace between two words is dropped (RFC
    2047 section 6.2), and adjacent words in one charset are decoded together, so a
    character split across two words survives. A malformed word stays as written.
    """
    if "=?" not in text:
        return text
    decoder = _WordDecoder(defects)
    position, after_word = 0, False
    for match in _ENCODED_WORD.finditer(text):
        gap = text[position : match.start()]
        data = _word_bytes(match.group(2), match.group(3), defects)
        if gap.strip() or not after_word or data is None:
            decoder.text(gap)
        if data is None:
            decoder.text(match.group())
        else:
            decoder.word(match.group(1), data)
        position, after_word = match.end(), data is not None
    decoder.text(text[position:])
    return "".join(decoder.out)


def decode_bytes(data: bytes, charset: str | None, defects: set[str]) -> str:
    """Decode by a declared charset; when that is wrong, try UTF-8, then decode lossily."""
    codec = _codec(charset, defects)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        defects.add("charset-mismatch")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252" if codec == "ascii" else codec, "replace")


def recover_8bit(text: str, defects: set[str]) -> str:
    """Turn surrogate-escaped bytes back into text: UTF-8 where they decode, else cp1252."""
    if text.isascii():
        return text
    return _ESCAPED_BYTES.sub(lambda run: _decode_run(run.group(), defects), text)


def clean_text(text: str, defects: set[str]) -> str:
    """Header-derived text made safe: no lone surrogate, CR, LF, NUL or other line break."""
    if not text.isascii():
        text = replace_surrogates(recover_8bit(text, defects))
    if _UNSAFE.search(text) is None:
        return text
    defects.add("header-crlf")
    return _UNSAFE.sub(" ", text)


def replace_surrogates(text: str) -> str:
    """The text with every lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


def note_defects(defects: set[str], found: Iterable[object]) -> None:
    """Record defects the stdlib parsers report as objects by their class names."""
    defects.update(type(defect).__name__ for defect in found)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _decode_run(run: str, defects: set[str]) -> str:
    """Decode one run of raw 8-bit header bytes (held as surrogate escapes)."""
    data = run.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        defects.add("header-not-utf8")
    damaged = data.decode("utf-8", "replace")
    if damaged.replace("\ufffd", ""):  # holds real UTF-8 characters: damaged UTF-8, not cp1252
        return damaged
    try:
        return data.decode("cp1252")  # what non-UTF-8 8-bit headers mostly are
    except UnicodeDecodeError:
        return data.decode("latin-1")


class _WordDecoder:
    """Collects decoded text; adjacent encoded words of one charset are decoded together."""

    def __init__(self, defects: set[str]) -> None:
        self.out: list[str] = []
        self.defects = defects
        self.charset = ""
        self.words: list[bytes] = []

    def text(self, text: str) -> None:
        self.flush()
        self.out.append(text)

    def word(self, charset: str, data: bytes) -> None:
        charset = charset.partition("*")[0].lower()  # RFC 2231 adds "*language"
        if charset != self.charset:
            self.flush()
        self.charset = charset
        self.words.append(data)

    def flush(self) -> None:
        if self.words:
            self.out.append(decode_bytes(b"".join(self.words), self.charset, self.defects))
            self.words = []


def _word_bytes(encoding: str, payload: str, defects: set[str]) -> bytes | None:
    """The bytes an encoded word carries, or None (noted) if it cannot be decoded."""
    data = payload.encode("utf-8")
    try:
        if encoding in "qQ":
            return binascii.a2b_qp(data, header=True)
        return binascii.a2b_base64(data + b"===")
    except binascii.Error:
        defects.add("invalid-encoded-word")
        return None


def _codec(charset: str | None, defects: set[str]) -> str:
    """The codec for a declared charset: ASCII if none, UTF-8 if unknown or unsafe."""
    if not charset:
        return "ascii"
    try:
        codec = codecs.lookup(_SUPERSETS.get(charset.lower(), charset)).name
        codec = _SUPERSETS.get(codec, codec)
        if codec not in _UNSAFE_CODECS:
            b"\x80".decode(codec, "replace")  # LookupError if not a text encoding (base64...)
            return codec
    except (LookupError, UnicodeError, ValueError, TypeError):
        pass
    defects.add("unknown-charset")
    return "utf-8"
