"""Decode header fields safely: text without CR, LF or NUL, and strictly checked mailboxes.

Also home to the charset fallbacks (``decode_bytes``) that ``ingest.parse`` uses for bodies.
Two unfixed CVEs of this interpreter (3.11.7) are defended here.

CVE-2024-6923 (header folding does not quote CR/LF): an RFC 2047 word can decode to CR, LF
or NUL, and whoever re-serialises that text injects headers. ``clean_text`` replaces each
(and the other characters ``str.splitlines`` breaks at) by a space and records the
``header-crlf`` defect.

CVE-2023-27043 (gh-102988): ``email.utils.getaddresses`` and ``parseaddr`` read
``alice@example.org)<bob@example.com>`` as ``alice``, or as ``alice`` and ``bob``; we never
call them. We use the RFC 5322 parser behind ``email.headerregistry`` instead
(``email._header_value_parser``: private, but it is what ``policy.default`` runs), because
only its parse tree tells a ``mailbox`` from an ``invalid-mailbox``; the public
``AddressHeader.addresses`` merges both, and the invalid one still carries the plausible
``alice@example.org`` we must not report. Kept addresses must also pass ``is_valid_address``.

That parser is quadratic on some inputs (32 KiB of ``"`` takes seconds), so a header is first
split at top-level commas by a linear scan, each address is capped at ``MAX_ADDRESS_CHARS``
and one message may feed at most ``MAX_MESSAGE_ADDRESS_CHARS`` characters to it.
"""

from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass
from email import _header_value_parser as rfc5322

MAX_ADDRESS_CHARS = 1024
MAX_MESSAGE_ADDRESS_CHARS = 128 * 1024

_FOLD = re.compile(r"[\r\n]+(?=[ \t])")
_UNSAFE = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_ESCAPED_BYTES = re.compile(r"[\udc80-\udcff]+")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# Characters an addr-spec only holds through quoting or a misparse: whitespace, controls,
# lone surrogates and the RFC 5322 specials.
_PLAIN = r"[^\s\x00-\x1f\x7f\ud800-\udfff<>()\[\],;:\\\"@]+"
_LOCAL_PART = re.compile(_PLAIN)
_DOMAIN = re.compile(_PLAIN + r"|\[[^\s\x00-\x1f\x7f\ud800-\udfff\[\]\\]+\]")
_EMBEDDED = re.compile(r"[^\s<>()\[\],;:\"'@]+@[^\s<>()\[\],;:\"'@]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
# Text codecs that are quadratic (punycode), refuse errors="replace" (idna) or can emit lone
# surrogates (the escape codecs): no honest mail declares them.
_UNSAFE_CODECS = frozenset({"idna", "punycode", "raw-unicode-escape", "unicode-escape"})
# Charset labels mailers use for a superset, mapped to it as the WHATWG Encoding Standard does;
# the first three are labels Python does not know.
_SUPERSETS = {"x-gbk": "gb18030", "windows-874": "cp874", "x-sjis": "cp932", "gb2312": "gb18030"}
_SUPERSETS |= {"gbk": "gb18030", "euc_kr": "cp949", "iso8859-1": "cp1252", "big5": "big5hkscs"}
_SUPERSETS |= {"iso8859-9": "cp1254", "tis-620": "cp874", "shift_jis": "cp932"}
_NAME_WORD = r"[^\s()<>\[\],;:\"\\]+"
_LENIENT = re.compile(
    rf'\s*("(?:[^"\\]|\\.)*"\s*|{_NAME_WORD}(?:\s+{_NAME_WORD})*\s+)<([^<>]*)>\s*'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_SPECIALS = re.compile(r"[\\\"(),:;<>\[\]]")


def unfold(value: str, defects: set[str]) -> str:
    """A raw header value unfolded, its 8-bit bytes decoded; RFC 2047 words stay encoded.

    Only a line break followed by a space or tab is folding; any other CR or LF is left
    for ``clean_text`` to replace and report.
    """
    return recover_8bit(_FOLD.sub("", value), defects)


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
        text = _SURROGATES.sub("\ufffd", recover_8bit(text, defects))
    if _UNSAFE.search(text) is None:
        return text
    defects.add("header-crlf")
    return _UNSAFE.sub(" ", text)


@dataclass(slots=True)
class AddressBudget:
    """How many more characters one message may send through the quadratic address parser."""

    remaining: int = MAX_MESSAGE_ADDRESS_CHARS


def extract_mailboxes(
    value: str, budget: AddressBudget, defects: set[str]
) -> list[tuple[str, str]]:
    """Return the (display name, address) pairs of one unfolded header value, in order.

    RFC 2047 words are decoded inside display names only; names come out cleaned. Invalid
    addresses are dropped, and each problem is added to ``defects``.
    """
    found: list[tuple[str, str]] = []
    for piece in split_addresses(value):
        if not piece.strip():
            continue
        if len(piece) > MAX_ADDRESS_CHARS:
            defects.add("address-too-long")
            continue
        if len(piece) > budget.remaining:
            defects.add("address-budget-exceeded")
            break
        budget.remaining -= len(piece)
        found.extend(_parse_piece(piece, defects))
    return found


def is_valid_address(address: str | None) -> bool:
    """True for ``local@domain``: one "@", both sides non-empty, no space, control or special."""
    if not address or address.count("@") != 1:
        return False
    local, _, domain = address.partition("@")
    return bool(_LOCAL_PART.fullmatch(local) and _DOMAIN.fullmatch(domain))


def embeds_other_address(name: str, address: str) -> bool:
    """True when a display name shows an address other than the real one (a spoofing trick)."""
    real = address.casefold()
    return any(m.group().strip(".").casefold() != real for m in _EMBEDDED.finditer(name))


def split_addresses(value: str) -> list[str]:
    """Split an address list at commas outside quotes, comments, ``<>``, ``[]`` and groups.

    A backslash escapes the next character everywhere, which can only merge pieces, never
    split one: a wrong merge yields an invalid (dropped) address, a wrong split could yield
    a valid but wrong one.
    """
    scanner = _Scanner()
    pieces: list[str] = []
    start = 0
    escaped = -1
    for match in _SPECIALS.finditer(value):
        position, char = match.start(), match.group()
        if position == escaped:
            continue
        if char == "\\":
            escaped = position + 1
        elif scanner.splits_at(char):
            pieces.append(value[start:position])
            start = position + 1
    pieces.append(value[start:])
    return pieces


@dataclass(slots=True)
class _Scanner:
    """Lexical state of ``split_addresses`` between two special characters."""

    quoted: bool = False
    comment: int = 0
    angle: bool = False
    literal: bool = False
    group: bool = False

    def splits_at(self, char: str) -> bool:
        """Advance over one special character; True if it is a top-level comma."""
        if self.quoted:
            self.quoted = char != '"'
        elif self.comment:
            self.comment += {"(": 1, ")": -1}.get(char, 0)
        elif self.literal:
            self.literal = char != "]"
        else:
            return self._top_level(char)
        return False

    def _top_level(self, char: str) -> bool:
        if char == ",":
            return not (self.angle or self.group)
        if char == '"':
            self.quoted = True
        elif char == "(":
            self.comment = 1
        elif char == "[":
            self.literal = True
        elif char in "<>":
            self.angle = char == "<"
        elif char == ":":
            self.group = self.group or not self.angle
        elif char == ";":
            self.group = False
        return False


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


def _parse_piece(piece: str, defects: set[str]) -> list[tuple[str, str]]:
    """Parse one address or group; any invalid part drops the whole piece.

    Keeping the valid part would be wrong: the CVE-2023-27043 inputs parse as a valid
    address followed by junk that holds another address.
    """
    found = _parse_strict(piece, defects)
    if found is None:
        found = _parse_lenient(piece, defects)
    if found is None:
        defects.add("invalid-address")
        return []
    return found


def _parse_strict(piece: str, defects: set[str]) -> list[tuple[str, str]] | None:
    """The valid mailboxes by RFC 5322, or None if the parser found anything invalid."""
    try:
        tree, rest = rfc5322.get_address_list(piece)
    except Exception:  # noqa: BLE001 - hostile input makes this parser raise RecursionError, IndexError...; a bad address is data
        return None
    defects.update(type(defect).__name__ for defect in tree.all_defects)
    if rest.strip() or any(len(a.all_mailboxes) != len(a.mailboxes) for a in tree.addresses):
        return None
    found = [mailbox for address in tree.addresses for mailbox in address.mailboxes]
    context = piece if len(found) == 1 else ""  # comments count too, but not a group's others
    checked = [_checked(box.display_name or "", box.addr_spec, context, defects) for box in found]
    return [pair for pair in checked if pair is not None]


def _parse_lenient(piece: str, defects: set[str]) -> list[tuple[str, str]] | None:
    """Accept ``name <address>``, the name one quoted string or plain words ("@" allowed).

    RFC 5322 rejects the encoded words some mailers put in quoted names and the unquoted
    ``alice@example.com <bob@example.com>`` of phishing mail, yet in both the angle brackets
    leave no doubt which is the address. Without whitespace before the "<" of an unquoted
    name we stay strict: that is the shape of the CVE-2023-27043 inputs.
    """
    match = _LENIENT.fullmatch(piece)
    if match is None:
        return None
    name = match.group(1).strip()
    if name.startswith('"'):
        name = _QUOTED_PAIR.sub(r"\1", name[1:-1])
    pair = _checked(decode_words(name, defects), match.group(2).strip(), piece, defects)
    return None if pair is None else [pair]


def _checked(
    name: str, address: str | None, context: str, defects: set[str]
) -> tuple[str, str] | None:
    """Return the cleaned (name, address) if the address is valid.

    Flag a decoded name, or the written ``context`` (comments included), that shows
    another address.
    """
    if address is None or not is_valid_address(address):
        defects.add("invalid-address")
        return None
    if embeds_other_address(f"{name} {context}", address):
        defects.add("display-name-address")
    return clean_text(name, defects), address
