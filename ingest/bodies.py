"""Walk a parsed message's MIME tree within limits; file each leaf as text, HTML or attachment.

Limits: the feed parser recurses once per nesting level, so a thousand nested parts raise
``RecursionError`` inside it; ``BoundedMessage``, the parser's message factory, stops it
below ``MAX_DEPTH`` levels and ``MAX_PARTS`` parts.

Never call ``get_payload()`` without ``decode=True`` on a leaf: for 8-bit bodies it decodes
by the declared charset, and a charset like punycode raises or is quadratic. Bodies are
decoded by ``ingest.headers.decode_bytes`` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from email.message import Message
from email.policy import Policy, compat32
from typing import Any

from ingest.headers import clean_text, decode_bytes, decode_text, note_defects, unfold

MAX_DEPTH = 50
MAX_PARTS = 2000

_BODY_TYPES = frozenset({"text/plain", "text/html"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})


class BoundedMessage(Message):
    """A part that knows its depth, so the feed parser stops descending past the limits.

    The parser attaches each new part to its parent before reading the part's headers, then
    asks ``get_content_maintype()`` whether to parse its body as parts: an over-limit part
    answers "application", so its body stays one opaque string, and ``cut`` says why.
    """

    def __init__(self, policy: Policy[Any] = compat32) -> None:
        super().__init__(policy)
        self.depth = 0
        self.budget = [MAX_PARTS]  # shared by every part of one message
        self.cut: str | None = None

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
        stack.extend((child, attached) for child in reversed(_children(part)))


def take_leaf(
    doc: dict[str, Any], part: Message, attached: bool, texts: list[str], defects: set[str]
) -> None:
    """File a leaf as body text (into ``texts``), as the HTML body, or as an attachment."""
    content_type = clean_text(part.get_content_type(), defects)
    disposition = _disposition(part, defects)
    filename = _filename(part, defects)
    data = _payload(part)
    note_defects(defects, part.defects)  # decoding adds some
    is_body = content_type in _BODY_TYPES and not (attached or filename)
    is_body = is_body and disposition != "attachment"
    if is_body and (content_type == "text/plain" or doc["html"] is None):
        body = decode_bytes(data, part.get_content_charset(), defects).replace("\r\n", "\n")
        if content_type == "text/plain":
            texts.append(body)
        else:
            doc["html"] = body
        return
    doc["attachments"].append(
        {
            "filename": filename,
            "content_type": content_type,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "disposition": disposition,
            "content_id": _content_id(part, defects),
        }
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
        return b"".join(_flatten(child) for child in _children(part))
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _flatten(part: Message) -> bytes:
    """A nested part's raw header lines, a blank line and its body, as the parser split them.

    Not ``Message.as_bytes()``: the generator re-folds headers and, through
    ``get_payload()``, decodes bodies by their declared charset (which may be hostile).
    """
    head = "".join(f"{name}: {value}\n" for name, value in part.raw_items())
    return head.encode("utf-8", "surrogateescape") + b"\n" + _payload(part)


def _children(part: Message) -> list[Message]:
    """The sub-parts of a multipart part; none (and no ``get_payload()`` call) for a leaf."""
    if not part.is_multipart():
        return []
    return [child for child in part.get_payload() if isinstance(child, Message)]


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
