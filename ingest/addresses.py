"""Decode header fields safely: text without CR, LF or NUL, and strictly checked mailboxes.

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

import re
from dataclasses import dataclass
from datetime import UTC
from email import _header_value_parser as rfc5322
from email.utils import parsedate_to_datetime

MAX_ADDRESS_CHARS = 1024
MAX_MESSAGE_ADDRESS_CHARS = 128 * 1024

_UNFOLD = str.maketrans("", "", "\r\n")
_UNSAFE = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_ESCAPED_BYTES = re.compile(r"[\udc80-\udcff]+")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# Characters an addr-spec only holds through quoting or a misparse: whitespace, controls,
# lone surrogates and the RFC 5322 specials.
_PLAIN = r"[^\s\x00-\x1f\x7f\ud800-\udfff<>()\[\],;:\\\"@]+"
_LOCAL_PART = re.compile(_PLAIN)
_DOMAIN = re.compile(_PLAIN + r"|\[[^\s\x00-\x1f\x7f\ud800-\udfff\[\]\\]+\]")
_EMBEDDED = re.compile(r"[^\s<>()\[\],;:\"'@]+@[^\s<>()\[\],;:\"'@]+")
_MSG_ID = re.compile(r"<([^<>\s\x00-\x1f\x7f]+)>")
_BARE_ID = re.compile(r"[^<>\s\x00-\x1f\x7f]+")
_SPECIALS = re.compile(r"[\\\"(),:;<>\[\]]")


def unfold(value: str, defects: set[str]) -> str:
    """A raw header value unfolded, its 8-bit bytes decoded; RFC 2047 words stay encoded."""
    return recover_8bit(value.translate(_UNFOLD), defects)


def decode_text(value: str, defects: set[str]) -> str:
    """An unfolded header value with its RFC 2047 words decoded, made safe by clean_text."""
    return clean_text(decode_words(value, defects), defects)


def decode_words(text: str, defects: set[str]) -> str:
    """Decode RFC 2047 encoded words as in unstructured text (the parser records defects)."""
    if "=?" not in text:
        return text
    try:
        tree = rfc5322.get_unstructured(text)
        decoded = str(tree)
    except Exception:  # noqa: BLE001 - this decoder raises assorted errors on hostile words; they are data
        defects.add("header-decode-failed")
        return text
    defects.update(type(defect).__name__ for defect in tree.all_defects)
    return decoded


def recover_8bit(text: str, defects: set[str]) -> str:
    """Turn surrogate-escaped bytes back into text: UTF-8 where they decode, else Latin-1."""
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


def parse_date(value: str, defects: set[str]) -> str | None:
    """The date as UTC ``YYYY-MM-DDTHH:MM:SSZ``; an unknown zone ("-0000") is read as UTC."""
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.add("invalid-date")
        return None


def msg_ids(values: list[str]) -> list[str]:
    """Message ids without their angle brackets, as JMAP (RFC 8621) reports them."""
    return [found for value in values for found in _MSG_ID.findall(value)]


def message_id(value: str | None, defects: set[str]) -> str | None:
    if value is None:
        return None
    ids = msg_ids([value])
    if ids:
        return ids[0]
    defects.add("invalid-message-id")
    bare = value.strip()
    return bare if _BARE_ID.fullmatch(bare) else None


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
    data = run.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        defects.add("header-not-utf8")
        return data.decode("latin-1")


def _parse_piece(piece: str, defects: set[str]) -> list[tuple[str, str]]:
    """Parse one comma-free address (or group) and keep only its valid mailboxes."""
    try:
        tree, rest = rfc5322.get_address_list(piece)
    except Exception:  # noqa: BLE001 - hostile input makes this parser raise RecursionError, IndexError...; a bad address is data
        defects.add("invalid-address")
        return []
    defects.update(type(defect).__name__ for defect in tree.all_defects)
    if rest.strip():
        defects.add("invalid-address")
        return []
    found: list[tuple[str, str]] = []
    for address in tree.addresses:
        if len(address.all_mailboxes) != len(address.mailboxes):
            defects.add("invalid-address")
        for mailbox in address.mailboxes:
            checked = _checked(mailbox.display_name or "", mailbox.addr_spec, defects)
            if checked is not None:
                found.append(checked)
    return found


def _checked(name: str, address: str | None, defects: set[str]) -> tuple[str, str] | None:
    """Return the cleaned (name, address) if the address is valid; flag deceptive names."""
    if address is None or not is_valid_address(address):
        defects.add("invalid-address")
        return None
    if embeds_other_address(name, address):
        defects.add("display-name-address")
    return clean_text(name, defects), address
