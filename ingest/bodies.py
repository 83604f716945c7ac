"""Walk a parsed message's MIME tree within limits; file each leaf as text, HTML or attachment.

Limits: the feed parser recurses once per nesting level, so a thousand nested parts raise
``RecursionError`` inside it; ``BoundedMessage``, the parser's message factory, stops it
below ``MAX_DEPTH`` levels and ``MAX_PARTS`` parts. ``extract`` decodes at most
``MAX_DECODED_BYTES`` in all: a part that does not fit is left out, with a defect.

Never call ``get_payload()`` without ``decode=True`` on a leaf: for 8-bit bodies it decodes
by the declared charset, and a charset like punycode raises or is quadratic. Bodies are
decoded by ``ingest.headers.decode_bytes`` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.policy import Policy, compat32
from typing import Any

from ingest.headers import clean_text, decode_bytes, decode_text, note_defects, unfold

MAX_DEPTH = 50
MAX_PARTS = 2000
MAX_DECODED_BYTES = 100 * 1024 * 1024

_BODY_TYPES = frozenset({"text/plain", "text/html"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})


class BoundedMessage(Message):
    """A part that knows its depth, so the feed parser stops descending past the limits.

    The parser attaches each new part to its parent before reading the part's headers, then
    asks ``get_content_maintype()`` whether to parse its body as parts: an over-limit part
    answers "application", so its body stays one opaque string, and ``cut`` says why.
    """

    _headers: list[tuple[str, Any]]
    _default_type: str

    def __init__(self, policy: Policy[Any] = compat32) -> None:
        super().__init__(policy)
        self.depth = 0
        self.budget = [MAX_PARTS]  # shared by every part of one message
        self.cut: str | None = None
        self._memo: dict[Any, Any] = {}
        self._memo_token: tuple[int, int, str] | None = None

    # Header look-ups are memoised: the stdlib scans every header (lower-casing each name)
    # and re-parses Content-Type's parameters at each call, and a part is asked a dozen
    # times. The memo is dropped whenever the header list or the default type changes (a
    # new list, another length, or replace_header, which edits the list in place).

    def _memo_for(self) -> dict[Any, Any]:
        token = (id(self._headers), len(self._headers), self._default_type)
        if token != self._memo_token:
            self._memo_token, self._memo = token, {}
        return self._memo

    def replace_header(self, _name: str, _value: Any) -> None:
        self._memo_token = None
        super().replace_header(_name, _value)

    def get(self, name: str, failobj: Any = None) -> Any:
        memo = self._memo_for()
        fields = memo.get("fields")
        if fields is None:
            fields = memo["fields"] = {}
            for key, value in self._headers:
                fields.setdefault(key.lower(), (key, value))
        found = fields.get(name.lower())
        return failobj if found is None else self.policy.header_fetch_parse(*found)

    def get_content_type(self) -> str:
        memo = self._memo_for()
        found: str | None = memo.get("type")
        if found is None:
            found = memo["type"] = super().get_content_type()
        return found

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        memo = self._memo_for()
        key = ("params", header)
        if key not in memo:
            missing = object()
            params = super()._get_params_preserve(missing, header)  # type: ignore[misc]
            memo[key] = None if params is missing else params
        found = memo[key]
        return failobj if found is None else found

    def attach(self, payload: Message | str) -> None:
        if isinstance(payload, BoundedMessage):
            payload.depth, payload.budget = self.depth + 1, self.budget
            self.budget[0] -= 1
            if payload.depth > MAX_DEPTH:
                payload.cut = "mime-too-deep"
            elif self.budget[0] < 0:
                payload.cut = "too-many-parts"
        super().attach(payload)

    def get_content_maintype(self) -> str:
        return "application" if self.cut else super().get_content_maintype()


@dataclass(frozen=True, slots=True)
class Found:
    """One attachment or inline part: what its headers say, and its decoded bytes.

    ``parent`` is the sha256 of the attachment it was unpacked from (a TNEF winmail.dat);
    ``charset`` is the declared one, for calendars.
    """

    filename: str | None
    content_type: str
    disposition: str | None
    content_id: str | None
    data: bytes = field(repr=False)
    sha256: str
    parent: str | None = None
    charset: str | None = None


def found(
    filename: str | None,
    content_type: str,
    data: bytes,
    *,
    disposition: str | None = None,
    content_id: str | None = None,
    parent: str | None = None,
    charset: str | None = None,
) -> Found:
    """A ``Found`` with the sha256 of its bytes."""
    sha = hashlib.sha256(data).hexdigest()
    return Found(filename, content_type, disposition, content_id, data, sha, parent, charset)


@dataclass(slots=True)
class Extracted:
    """What ``extract`` found: body texts in order, the first HTML body, the attachments.

    ``budget`` is how many more bytes may be decoded; ``errors`` holds unexpected
    exceptions, one per leaf they spoiled.
    """

    texts: list[str] = field(default_factory=list)
    html: str | None = None
    attachments: list[Found] = field(default_factory=list)
    budget: int = 0
    errors: list[Exception] = field(default_factory=list)

    def spend(self, size: int, defects: set[str]) -> bool:
        """Take ``size`` bytes from the decoding budget; False (noted) if they do not fit."""
        if size > self.budget:
            defects.add("decoded-size-limit")
            return False
        self.budget -= size
        return True


def extract(root: Message, defects: set[str]) -> Extracted:
    """File every leaf of the tree; an exception in one leaf spoils only that leaf."""
    out = Extracted(budget=MAX_DECODED_BYTES)
    for part, attached in leaves(root, defects):
        try:
            take_leaf(out, part, attached, defects)
        except Exception as exc:  # noqa: BLE001 - a bad part is data, never an exception
            out.errors.append(exc)
    return out


def leaves(root: Message, defects: set[str]) -> Iterator[tuple[Message, bool]]:
    """Yield (leaf, inside an attachment) in document order, skipping parts cut by the parser.

    A leaf is inside an attachment when a container above it, typically a forwarded
    message/rfc822, has ``Content-Disposition: attachment``: its text is not our body.
    """
    stack = [(root, False)]
    while stack:
        part, attached = stack.pop()
        note_defects(defects, part.defects)
        if isinstance(part, BoundedMessage) and part.cut:
            defects.add(part.cut)
            continue
        if not (part.is_multipart() and _is_container(part.get_content_type())):
            yield part, attached
            continue
        attached = attached or part.get_content_disposition() == "attachment"
        stack.extend((child, attached) for child in reversed(children(part)))


def take_leaf(out: Extracted, part: Message, attached: bool, defects: set[str]) -> None:
    """File a leaf as body text, as the HTML body, or as an attachment (if it fits)."""
    content_type = clean_text(part.get_content_type(), defects)
    disposition = _disposition(part, defects)
    filename = _filename(part, defects)
    data = _payload(part)
    note_defects(defects, part.defects)  # decoding adds some
    if not out.spend(len(data), defects):
        return
    is_body = content_type in _BODY_TYPES and not (attached or filename)
    is_body = is_body and disposition != "attachment"
    charset = _charset(part, defects)
    if is_body and (content_type == "text/plain" or out.html is None):
        body = decode_bytes(data, charset, defects).replace("\r\n", "\n")
        if content_type == "text/plain":
            out.texts.append(body)
        else:
            out.html = body
        return
    content_id = _content_id(part, defects)
    out.attachments.append(
        found(
            filename,
            content_type,
            data,
            disposition=disposition,
            content_id=content_id,
            charset=charset,
        )
    )


def _is_container(content_type: str) -> bool:
    """Multiparts and embedded messages; message/delivery-status header blocks are a leaf."""
    return content_type.startswith("multipart/") or content_type in _MESSAGE_TYPES


def _payload(part: Message) -> bytes:
    """The decoded bytes of a part, decoded once; header blocks are joined as parsed.

    A multipart leaf is a message/delivery-status or other message/* report: its sub-parts
    are header blocks, each flattened in turn.
    """
    if part.is_multipart():
        return b"".join(_flatten(child) for child in children(part))
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _flatten(part: Message) -> bytes:
    """A nested part's raw header lines, a blank line and its body, as the parser split them.

    Not ``Message.as_bytes()``: the generator re-folds headers and, through
    ``get_payload()``, decodes bodies by their declared charset (which may be hostile).
    """
    head = "".join(f"{name}: {value}\n" for name, value in part.raw_items())
    return head.encode("utf-8", "surrogateescape") + b"\n" + _payload(part)


def children(part: Message) -> list[Message]:
    """The sub-parts of a multipart part; none (and no ``get_payload()`` call) for a leaf."""
    if not part.is_multipart():
        return []
    return [child for child in part.get_payload() if isinstance(child, Message)]


def _charset(part: Message, defects: set[str]) -> str | None:
    """The declared charset; None (noted) when the parameter cannot even be read.

    ``get_content_charset`` raises ``ValueError`` for an RFC 2231 charset name holding NUL.
    """
    try:
        charset = part.get_content_charset()
    except (LookupError, UnicodeError, ValueError, TypeError):
        defects.add("unknown-charset")
        return None
    return charset and clean_text(charset, defects)


def _disposition(part: Message, defects: set[str]) -> str | None:
    """``attachment``, ``inline`` or None; RFC 2183 says treat unknown ones as attachment."""
    value = part.get_content_disposition()
    if not value or value in ("attachment", "inline"):
        return value or None
    defects.add("unknown-disposition")
    return "attachment"


def _filename(part: Message, defects: set[str]) -> str | None:
    """The filename as given (RFC 2231 and RFC 2047 decoded), minus CR, LF and NUL."""
    try:
        name = part.get_filename()
    except (LookupError, UnicodeError, ValueError):
        defects.add("invalid-filename")
        return None
    if not name:
        return None
    return decode_text(unfold(name, defects), defects) or None


def _content_id(part: Message, defects: set[str]) -> str | None:
    """The Content-ID without angle brackets, as a ``cid:`` URL names it."""
    value = part.get("content-id")
    if value is None:
        return None
    text = clean_text(unfold(str(value), defects).strip(), defects)
    return text.removeprefix("<").removesuffix(">").strip() or None
