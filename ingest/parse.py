"""Turn one raw RFC 5322 message into a deterministic JSON document, without ever raising.

Policy: a ``compat32`` subclass, not ``policy.default``. With ``policy.default`` every header
access builds a header object through ``email.headerregistry`` (in 3.11 that raises, e.g.
``ValueError`` for a display name holding an encoded CR/LF), ``get_content()`` raises
``LookupError`` on an unknown charset, and the corpus parsed about twice as slowly.
``compat32`` hands us header strings; we decode them explicitly, each step under its own
guard, and every problem becomes a defect.

Limits: the feed parser recurses once per nesting level, so a thousand nested parts raise
``RecursionError`` inside it; ``_BoundedMessage`` stops it below ``MAX_DEPTH`` levels and
``MAX_PARTS`` parts. ``ingest.addresses`` bounds the address parser.

Defences for this interpreter's unfixed CVEs: addresses come from ``ingest.addresses``
(CVE-2023-27043), and no decoded header text keeps a CR, LF or NUL (CVE-2024-6923): each is
replaced by a space and the ``header-crlf`` defect is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC
from email import message_from_bytes
from email.message import Message
from email.policy import Compat32, Policy, compat32
from email.utils import parsedate_to_datetime
from typing import Any

from ingest.addresses import (
    AddressBudget,
    clean_text,
    decode_bytes,
    decode_text,
    decode_words,
    extract_mailboxes,
    recover_8bit,
    unfold,
)

PARSER_VERSION: int = 1
SCHEMA_VERSION: int = 1
MAX_DEPTH = 50
MAX_PARTS = 2000

Headers = list[tuple[str, str]]
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_MSG_ID = re.compile(r"<([^<>\s\x00-\x1f\x7f]+)>")
_BARE_ID = re.compile(r"[^<>\s\x00-\x1f\x7f]+")
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})
# Header fields RFC 5322 allows at most once.
_SINGLETONS = "bcc cc date from in-reply-to message-id references reply-to sender subject to"
_ADDRESS_FIELDS = (("from", "from"), ("to", "to"), ("cc", "cc"), ("reply_to", "reply-to"))


class _BoundedMessage(Message):
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
        if isinstance(payload, _BoundedMessage):
            payload.depth, payload.budget = self.depth + 1, self.budget
            self.budget[0] -= 1
            if payload.depth > MAX_DEPTH:
                payload.cut = "mime-too-deep"
            elif self.budget[0] < 0:
                payload.cut = "too-many-parts"
        super().attach(payload)

    def get_content_maintype(self) -> str:
        return "application" if self.cut else super().get_content_maintype()


class _Policy(Compat32):
    """compat32, but ``Message.get`` returns 8-bit header bytes decoded, not U+FFFD-mangled.

    Filenames, charsets and content types are read through it.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return recover_8bit(value, set())


_POLICY = _Policy(message_factory=_BoundedMessage)


def parse_message(
    raw: bytes, *, account: str, uidl: str, sha256: str, raw_key: str
) -> dict[str, Any]:
    """Build the structured JSON document for one raw RFC 5322 message. Never raises.

    Every key is always present. Problems become ``defects``; an unexpected exception becomes
    ``parse_error`` (its type and message, never message content), and the document keeps
    what the other steps extracted.
    """
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "parser_version": PARSER_VERSION,
        "account": account,
        "uidl": uidl,
        "sha256": sha256,
        "raw_key": raw_key,
        "size": len(raw),
        **dict.fromkeys(("message_id", "in_reply_to", "date", "date_raw", "subject"), None),
        **{key: [] for key in ("references", "from", "to", "cc", "reply_to")},
        **{"text": None, "html": None, "attachments": [], "headers": [], "defects": []},
        "parse_error": None,
    }
    defects: set[str] = set()
    _guard(doc, _fill, doc, raw, defects)
    doc["defects"] = sorted(defects)
    return doc


def dump_document(doc: dict[str, Any]) -> bytes:
    """Canonical UTF-8 JSON bytes for a document (deterministic: same input -> same bytes).

    Keys sorted, no whitespace, non-ASCII as UTF-8, NaN refused; a lone surrogate (which
    UTF-8 cannot encode) becomes U+FFFD instead of an error.
    """
    try:
        return _dumps(doc).encode("utf-8")
    except UnicodeEncodeError:
        return _dumps(_scrubbed(doc)).encode("utf-8")


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(
        doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )


def _scrubbed(value: Any) -> Any:
    """A copy of a JSON-like value with every lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrubbed(key): _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value


def _guard(doc: dict[str, Any], step: Callable[..., None], *args: Any) -> None:
    """Run one step; an unexpected exception becomes the document's first parse_error."""
    try:
        step(*args)
    except Exception as exc:  # noqa: BLE001 - a bad message is data, never an exception
        if doc["parse_error"] is None:
            text = f"{type(exc).__name__}: {exc}"[:300]
            doc["parse_error"] = clean_text(text, set())


def _fill(doc: dict[str, Any], raw: bytes, defects: set[str]) -> None:
    """Parse, then run each extraction step on its own, so one failure spoils only itself."""
    message = message_from_bytes(raw, policy=_POLICY)
    headers = [(name, unfold(str(value), defects)) for name, value in message.raw_items()]
    for step in (_fill_headers, _fill_envelope, _fill_addresses, _fill_body):
        _guard(doc, step, doc, message, headers, defects)


def _fill_headers(doc: dict[str, Any], _: Message, headers: Headers, defects: set[str]) -> None:
    doc["headers"] = [[clean_text(k, defects), decode_text(v, defects)] for k, v in headers]
    counts = Counter(name.lower() for name, _ in headers)
    defects.update(f"duplicate-{name}" for name in _SINGLETONS.split() if counts[name] > 1)


def _fill_envelope(doc: dict[str, Any], _: Message, headers: Headers, defects: set[str]) -> None:
    subject = _first(headers, "subject")
    doc["subject"] = None if subject is None else decode_text(subject, defects)
    date = _first(headers, "date")
    if date is None:
        defects.add("missing-date")
    else:
        doc["date_raw"] = clean_text(date.strip(), defects)
        doc["date"] = _parse_date(doc["date_raw"], defects)
    doc["message_id"] = _message_id(_first(headers, "message-id"), defects)
    doc["in_reply_to"] = next(iter(_msg_ids(_all(headers, "in-reply-to"))), None)
    doc["references"] = _msg_ids(_all(headers, "references"))


def _fill_addresses(doc: dict[str, Any], _: Message, headers: Headers, defects: set[str]) -> None:
    budget = AddressBudget()
    for key, field in _ADDRESS_FIELDS:
        found = [
            pair for v in _all(headers, field) for pair in extract_mailboxes(v, budget, defects)
        ]
        doc[key] = [{"name": name, "address": address} for name, address in found]
    if not _all(headers, "from"):
        defects.add("missing-from")


def _fill_body(doc: dict[str, Any], message: Message, _: Headers, defects: set[str]) -> None:
    texts: list[str] = []
    for part, attached in _leaves(message, defects):
        _guard(doc, _take_leaf, doc, part, attached, texts, defects)
    doc["text"] = "\n".join(texts) if texts else None


def _first(headers: Headers, name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _all(headers: Headers, name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


def _parse_date(value: str, defects: set[str]) -> str | None:
    """The date as UTC ``YYYY-MM-DDTHH:MM:SSZ``; an unknown zone ("-0000") is read as UTC."""
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.add("invalid-date")
        return None


def _msg_ids(values: list[str]) -> list[str]:
    """Message ids without their angle brackets, as JMAP (RFC 8621) reports them."""
    return [found for value in values for found in _MSG_ID.findall(value)]


def _message_id(value: str | None, defects: set[str]) -> str | None:
    if value is None:
        return None
    ids = _msg_ids([value])
    if ids:
        return ids[0]
    defects.add("invalid-message-id")
    bare = value.strip()
    return bare if _BARE_ID.fullmatch(bare) else None


def _leaves(root: Message, defects: set[str]) -> Iterator[tuple[Message, bool]]:
    """Yield (leaf, inside an attachment) in document order, skipping parts cut by the parser.

    A leaf is inside an attachment when a container above it, typically a forwarded
    message/rfc822, has ``Content-Disposition: attachment``: its text is not our body.
    """
    stack = [(root, False)]
    while stack:
        part, attached = stack.pop()
        defects.update(type(defect).__name__ for defect in part.defects)
        if isinstance(part, _BoundedMessage) and part.cut:
            defects.add(part.cut)
            continue
        if not (part.is_multipart() and _is_container(part.get_content_type())):
            yield part, attached
            continue
        attached = attached or part.get_content_disposition() == "attachment"
        stack.extend((child, attached) for child in reversed(_children(part)))


def _is_container(content_type: str) -> bool:
    """Multiparts and embedded messages; message/delivery-status header blocks are a leaf."""
    return content_type.startswith("multipart/") or content_type in _MESSAGE_TYPES


def _take_leaf(
    doc: dict[str, Any], part: Message, attached: bool, texts: list[str], defects: set[str]
) -> None:
    """File a leaf as body text, as the HTML body, or as an attachment."""
    content_type = clean_text(part.get_content_type(), defects)
    disposition = _disposition(part, defects)
    filename = _filename(part, defects)
    data = _payload(part)
    defects.update(type(defect).__name__ for defect in part.defects)  # decoding adds some
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


def _payload(part: Message) -> bytes:
    """The decoded bytes of a leaf, decoded once; header blocks are joined as parsed."""
    if part.is_multipart():  # message/delivery-status and other message/* reports
        return b"".join(_flatten(child) for child in _children(part))
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _flatten(part: Message) -> bytes:
    """A nested part's raw header lines, a blank line and its body, as the parser split them.

    Not ``Message.as_bytes()``: the generator re-folds headers and, through
    ``get_payload()``, decodes bodies by their declared charset (which may be hostile).
    """
    head = "".join(f"{name}: {value}\n" for name, value in part.raw_items())
    if part.is_multipart():
        body = b"".join(_flatten(child) for child in _children(part))
    else:
        data = part.get_payload(decode=True)
        body = data if isinstance(data, bytes) else b""
    return head.encode("utf-8", "surrogateescape") + b"\n" + body


def _children(part: Message) -> list[Message]:
    """The sub-parts of a multipart part.

    Never call ``get_payload()`` without ``decode=True`` on a leaf: for 8-bit bodies it
    decodes by the declared charset, and a charset like punycode raises or is quadratic.
    """
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
    return clean_text(decode_words(unfold(name, defects), defects), defects) or None


def _content_id(part: Message, defects: set[str]) -> str | None:
    """The Content-ID without angle brackets, as a ``cid:`` URL names it."""
    value = part.get("content-id")
    if value is None:
        return None
    text = clean_text(unfold(str(value), defects).strip(), defects)
    return text.removeprefix("<").removesuffix(">").strip() or None
