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

import binascii
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message

import pybase64

from ingest.bounded import MAX_DEPTH, MAX_PARTS, BoundedMessage
from ingest.headers import clean_text, decode_bytes, decode_text, note_defects, unfold

__all__ = ["MAX_DEPTH", "MAX_PARTS", "BoundedMessage", "Extracted", "Found", "extract", "found"]

MAX_DECODED_BYTES = 100 * 1024 * 1024

_BODY_TYPES = frozenset({"text/plain", "text/html"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})


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
    """What ``extract`` found: body texts in order, the HTML bodies joined, the attachments.

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
    """File every leaf of the tree; an exception in one leaf spoils only that leaf.

    An embedded message (message/rfc822 below the root) is listed whole, and the parts
    inside it are listed too, with ``parent`` = its sha256; their text is not our body.
    """
    out = Extracted(budget=MAX_DECODED_BYTES)
    holders: dict[int, str] = {}  # id of an embedded message -> its sha256
    for part, attached, holder in leaves(root, defects):
        parent = None if holder is None else holders.get(id(holder))
        try:
            if part.is_multipart() and _is_container(part.get_content_type()):
                sha = take_embedded(out, part, parent, defects)
                if sha is not None:
                    holders[id(part)] = sha
            else:
                take_leaf(out, part, attached, defects, parent)
        except Exception as exc:  # noqa: BLE001 - a bad part is data, never an exception
            out.errors.append(exc)
    return out


def leaves(root: Message, defects: set[str]) -> Iterator[tuple[Message, bool, Message | None]]:
    """Yield (leaf, inside an attachment, embedded message it is in) in document order,
    skipping parts cut by the parser; an embedded message is yielded before its parts.

    A leaf is inside an attachment when a container above it is an embedded message or
    has ``Content-Disposition: attachment``: its text is not our body.
    """
    stack: list[tuple[Message, bool, Message | None]] = [(root, False, None)]
    while stack:
        part, attached, holder = stack.pop()
        note_defects(defects, part.defects)
        if isinstance(part, BoundedMessage) and part.cut:
            defects.add(part.cut)
            continue
        content_type = part.get_content_type()
        if not (part.is_multipart() and _is_container(content_type)):
            yield part, attached, holder
            continue
        if part is not root and content_type in _MESSAGE_TYPES:
            yield part, attached, holder
            attached, holder = True, part
        attached = attached or part.get_content_disposition() == "attachment"
        stack.extend((child, attached, holder) for child in reversed(children(part)))


def take_embedded(
    out: Extracted, part: Message, parent: str | None, defects: set[str]
) -> str | None:
    """List an embedded message as one attachment (its bytes as written); its sha256."""
    data = _embedded_bytes(part)
    if not out.spend(len(data), defects):
        return None
    item = found(
        _filename(part, defects),
        clean_text(part.get_content_type(), defects),
        data,
        disposition=_disposition(part, defects),
        content_id=_content_id(part, defects),
        parent=parent,
    )
    out.attachments.append(item)
    return item.sha256


def _embedded_bytes(part: Message) -> bytes:
    """The embedded message as written (the line end before the next boundary excluded);
    rebuilt from the parsed parts when the message went through the feed parser.
    """
    inner = part.get_payload(0)
    if not isinstance(inner, Message):
        return b""
    source: tuple[str, int, int] | None = getattr(inner, "source", None)
    if source is None:
        return _flatten(inner)
    text, start, end = source
    written = text[start:end]
    written = written[:-2] if written.endswith("\r\n") else written.removesuffix("\n")
    return written.encode("ascii", "surrogateescape")


def take_leaf(
    out: Extracted, part: Message, attached: bool, defects: set[str], parent: str | None = None
) -> None:
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
    if is_body:
        body = decode_bytes(data, charset, defects).replace("\r\n", "\n")
        if content_type == "text/plain":
            out.texts.append(body)
        else:  # a second HTML body (a footer a list server added) joins the first
            out.html = body if out.html is None else f"{out.html}\n{body}"
        return
    content_id = _content_id(part, defects)
    out.attachments.append(
        found(
            filename,
            content_type,
            data,
            disposition=disposition,
            content_id=content_id,
            parent=parent,
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
    fast = _base64_body(part)
    if fast is not None:
        return fast
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _base64_body(part: Message) -> bytes | None:
    """A base64 body decoded in one C pass, or None to let ``get_payload`` decide.

    ``get_payload(decode=True)`` checks the whole text for surrogates, splits it into lines,
    joins them, matches the result against a regex and only then decodes: four passes over
    a 3 MB attachment. Wherever ``binascii.a2b_base64`` (which skips line breaks and other
    non-alphabet bytes) accepts the text, the stdlib's result is the same bytes (checked by
    a test over mutated encodings); where it does not (bad padding, non-ASCII), the stdlib's
    repair rules apply as before.
    """
    if str(part.get("content-transfer-encoding", "")).lower() != "base64":
        return None
    text = getattr(part, "_payload", None)  # undecoded; get_payload() would apply the charset
    if not isinstance(text, str):
        return None
    try:
        return a2b_base64(text.encode("ascii"))
    except (UnicodeError, binascii.Error):
        return None


def a2b_base64(data: bytes) -> bytes:
    """``binascii.a2b_base64(data)``, through pybase64's SIMD decoder (several times faster
    on a 3 MB attachment) wherever that gives the same bytes.

    Both skip line breaks and other non-alphabet bytes; they differ on a ``=`` before the
    end (binascii stops at completed padding, pybase64 decodes on or raises), so text with
    anything but padding and white space after its first ``=``, and text pybase64 refuses,
    go to binascii (``tests/unit/test_attachments.py`` compares the two on fuzzed input).
    """
    pad = data.find(b"=")
    if pad < 0 or not data[pad:].strip(b"=\r\n\t "):
        try:
            return pybase64.b64decode(data)
        except (binascii.Error, ValueError):
            pass
    return binascii.a2b_base64(data)


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
