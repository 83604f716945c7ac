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

import codecs
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from email.policy import Compat32, Policy, compat32
from typing import Any

from ingest.addresses import (
    AddressBudget,
    clean_text,
    decode_text,
    decode_words,
    extract_mailboxes,
    message_id,
    msg_ids,
    parse_date,
    recover_8bit,
    unfold,
)

PARSER_VERSION: int = 1
SCHEMA_VERSION: int = 1
MAX_DEPTH = 50
MAX_PARTS = 2000

Headers = list[tuple[str, str]]
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})
# Text codecs that are quadratic (punycode), refuse errors="replace" (idna) or can emit lone
# surrogates (the escape codecs): no honest mail declares them.
_UNSAFE_CODECS = frozenset({"idna", "punycode", "raw-unicode-escape", "unicode-escape"})
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
        doc["date"] = parse_date(doc["date_raw"], defects)
    doc["message_id"] = message_id(_first(headers, "message-id"), defects)
    doc["in_reply_to"] = next(iter(msg_ids(_all(headers, "in-reply-to"))), None)
    doc["references"] = msg_ids(_all(headers, "references"))


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
    for part in _leaves(message, defects):
        _guard(doc, _take_leaf, doc, part, texts, defects)
    doc["text"] = "\n".join(texts) if texts else None


def _first(headers: Headers, name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _all(headers: Headers, name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


def _leaves(root: Message, defects: set[str]) -> Iterator[Message]:
    """Yield the leaf parts in document order, skipping those the parser was stopped at."""
    stack = [root]
    while stack:
        part = stack.pop()
        defects.update(type(defect).__name__ for defect in part.defects)
        if isinstance(part, _BoundedMessage) and part.cut:
            defects.add(part.cut)
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and _is_container(part.get_content_type()):
            stack.extend(child for child in reversed(payload) if isinstance(child, Message))
        else:
            yield part


def _is_container(content_type: str) -> bool:
    """Multiparts and embedded messages; message/delivery-status header blocks are a leaf."""
    return content_type.startswith("multipart/") or content_type in _MESSAGE_TYPES


def _take_leaf(doc: dict[str, Any], part: Message, texts: list[str], defects: set[str]) -> None:
    """File a leaf as body text, as the HTML body, or as an attachment."""
    content_type = clean_text(part.get_content_type(), defects)
    disposition = _disposition(part, defects)
    filename = _filename(part, defects)
    data = _payload(part)
    defects.update(type(defect).__name__ for defect in part.defects)  # decoding adds some
    is_body = content_type in _BODY_TYPES and disposition != "attachment" and not filename
    if is_body and (content_type == "text/plain" or doc["html"] is None):
        body = _decode_text(data, part.get_content_charset(), defects).replace("\r\n", "\n")
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
    """The decoded bytes of a leaf, decoded once; header blocks are joined as written."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return b"".join(child.as_bytes() for child in payload if isinstance(child, Message))
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _decode_text(data: bytes, charset: str | None, defects: set[str]) -> str:
    """Decode a text body by its charset; when that is wrong, try UTF-8, then decode lossily."""
    codec = _codec(charset, defects)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        defects.add("charset-mismatch")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1" if codec == "ascii" else codec, "replace")


def _codec(charset: str | None, defects: set[str]) -> str:
    """The codec for a declared charset: ASCII if none, UTF-8 if unknown or unsafe."""
    if not charset:
        return "ascii"
    try:
        codec = codecs.lookup(charset).name
        if codec not in _UNSAFE_CODECS:
            b"\x80".decode(codec, "replace")  # LookupError if not a text encoding (base64...)
            return codec
    except (LookupError, UnicodeError, ValueError, TypeError):
        pass
    defects.add("unknown-charset")
    return "utf-8"


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
    return clean_text(decode_words(recover_8bit(name, defects), defects), defects) or None


def _content_id(part: Message, defects: set[str]) -> str | None:
    """The Content-ID without angle brackets, as a ``cid:`` URL names it."""
    value = part.get("content-id")
    if value is None:
        return None
    text = clean_text(unfold(str(value), defects).strip(), defects)
    return text.removeprefix("<").removesuffix(">").strip() or None
