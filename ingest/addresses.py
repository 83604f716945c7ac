"""Extract mailboxes from address headers strictly, so no misparse yields a wrong address.

Names are decoded and cleaned by ``ingest.headers``. Defended here: CVE-2023-27043
(gh-102988), unfixed in this interpreter (3.11.7). ``email.utils.getaddresses`` and
``parseaddr`` read ``alice@example.org)<bob@example.com>`` as ``alice``, or as ``alice`` and
``bob``; we never call them. We use the RFC 5322 parser behind ``email.headerregistry``
instead (``email._header_value_parser``: private, but it is what ``policy.default`` runs),
because only its parse tree tells a ``mailbox`` from an ``invalid-mailbox``; the public
``AddressHeader.addresses`` merges both, and the invalid one still carries the plausible
``alice@example.org`` we must not report. Kept addresses must also pass ``is_valid_address``.

That parser is quadratic on some inputs (32 KiB of ``"`` takes seconds), so a header is first
split at top-level commas by a linear scan, each address is capped at ``MAX_ADDRESS_CHARS``
and one message may feed at most ``MAX_MESSAGE_ADDRESS_CHARS`` characters to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import _header_value_parser as rfc5322

from ingest.headers import clean_text, decode_words, note_defects

MAX_ADDRESS_CHARS = 1024
MAX_MESSAGE_ADDRESS_CHARS = 128 * 1024

# Characters an addr-spec only holds through quoting or a misparse: whitespace, controls,
# lone surrogates and the RFC 5322 specials.
_PLAIN = r"[^\s\x00-\x1f\x7f\ud800-\udfff<>()\[\],;:\\\"@]+"
_LOCAL_PART = re.compile(_PLAIN)
_DOMAIN = re.compile(_PLAIN + r"|\[[^\s\x00-\x1f\x7f\ud800-\udfff\[\]\\]+\]")
_EMBEDDED = re.compile(r"[^\s<>()\[\],;:\"'@]+@[^\s<>()\[\],;:\"'@]+")
_NAME_WORD = r"[^\s()<>\[\],;:\"\\]+"
_LENIENT = re.compile(
    rf'\s*("(?:[^"\\]|\\.)*"\s*|{_NAME_WORD}(?:\s+{_NAME_WORD})*\s+)<([^<>]*)>\s*'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
# The shapes most mail uses, which the RFC 5322 parser reads without a defect and with the
# same result (checked against it on generated input in tests/unit/test_addresses.py):
# ``local@domain``, ``<local@domain>``, ``Plain Words <local@domain>`` and
# ``"Quoted, Name" <local@domain>`` (no backslash or encoded word inside), in dot-atoms.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_SIMPLE_BARE = re.compile(rf"[ \t]*({_DOT_ATOM}@{_DOT_ATOM})[ \t]*")
_SIMPLE_NAMED = re.compile(rf"[ \t]*((?:[A-Za-z0-9_'+-]+[ \t]+)+)<({_DOT_ATOM}@{_DOT_ATOM})>[ \t]*")
_SIMPLE_ANGLE = re.compile(rf"[ \t]*<({_DOT_ATOM}@{_DOT_ATOM})>[ \t]*")
_SIMPLE_QUOTED = re.compile(
    rf'[ \t]*"([A-Za-z0-9 .,\'()@:;<>_+-]*)"[ \t]*<({_DOT_ATOM}@{_DOT_ATOM})>[ \t]*'
)
_SPECIALS = re.compile(r"[\\\"(),:;<>\[\]]")


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


def _parse_piece(piece: str, defects: set[str]) -> list[tuple[str, str]]:
    """Parse one address or group; any invalid part drops the whole piece.

    Keeping the valid part would be wrong: the CVE-2023-27043 inputs parse as a valid
    address followed by junk that holds another address.
    """
    found = _parse_simple(piece, defects)
    if found is None:
        found = _parse_strict(piece, defects)
    if found is None:
        found = _parse_lenient(piece, defects)
    if found is None:
        defects.add("invalid-address")
        return []
    return found


def _parse_simple(piece: str, defects: set[str]) -> list[tuple[str, str]] | None:
    """The common shapes without the RFC 5322 parser, else None.

    Each gives exactly what ``_parse_strict`` gives for it, many times faster.
    """
    pair = _simple_pair(piece)
    if pair is None:
        return None
    checked = _checked(pair[0], pair[1], piece, defects)
    return [] if checked is None else [checked]


def _simple_pair(piece: str) -> tuple[str, str] | None:
    """(display name, address) of a piece in one of the simple shapes."""
    for pattern in (_SIMPLE_BARE, _SIMPLE_ANGLE):
        match = pattern.fullmatch(piece)
        if match:
            return "", match.group(1)
    match = _SIMPLE_NAMED.fullmatch(piece)
    if match:
        return " ".join(match.group(1).split()), match.group(2)
    match = _SIMPLE_QUOTED.fullmatch(piece)
    return (match.group(1), match.group(2)) if match else None


def _parse_strict(piece: str, defects: set[str]) -> list[tuple[str, str]] | None:
    """The valid mailboxes by RFC 5322, or None if the parser found anything invalid."""
    try:
        tree, rest = rfc5322.get_address_list(piece)
    except Exception:  # noqa: BLE001 - hostile input makes this parser raise RecursionError, IndexError...; a bad address is data
        return None
    note_defects(defects, tree.all_defects)
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
