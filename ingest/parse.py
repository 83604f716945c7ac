"""Turn one raw RFC 5322 message into a deterministic JSON document, without ever raising.

Policy: a ``compat32`` subclass, not ``policy.default``. With ``policy.default`` every header
access builds a header object through ``email.headerregistry`` (in 3.11 that raises, e.g.
``ValueError`` for a display name holding an encoded CR/LF), ``get_content()`` raises
``LookupError`` on an unknown charset, and the corpus parsed about twice as slowly.
``compat32`` hands us header strings; we decode them explicitly, each step under its own
guard, and every problem becomes a defect.

The MIME tree is walked, within limits, by ``ingest.bodies``; header text is decoded by
``ingest.headers`` and addresses come from ``ingest.addresses``. Between them they defend
this interpreter's unfixed CVE-2023-27043 and CVE-2024-6923: no address comes from
``email.utils``, and no decoded header text keeps a CR, LF or NUL (each is replaced by a
space and the ``header-crlf`` defect is recorded).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC
from email import message_from_bytes
from email.message import Message
from email.policy import Compat32
from email.utils import parsedate_to_datetime
from typing import Any

from ingest.addresses import AddressBudget, extract_mailboxes
from ingest.bodies import BoundedMessage, leaves, take_leaf
from ingest.headers import clean_text, decode_text, recover_8bit, replace_surrogates, unfold

PARSER_VERSION: int = 1
SCHEMA_VERSION: int = 1

Headers = list[tuple[str, str]]
_ID = r"[^<>\s\x00-\x1f\x7f]+"
_MSG_ID = re.compile(f"<({_ID})>")
_BARE_ID = re.compile(_ID)
# Header fields RFC 5322 allows at most once.
_SINGLETONS = "bcc cc date from in-reply-to message-id references reply-to sender subject to"
_ADDRESS_FIELDS = (("from", "from"), ("to", "to"), ("cc", "cc"), ("reply_to", "reply-to"))


class _Policy(Compat32):
    """compat32, but ``Message.get`` returns 8-bit header bytes decoded, not U+FFFD-mangled.

    Filenames, charsets and content types are read through it.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return recover_8bit(value, set())


_POLICY = _Policy(message_factory=BoundedMessage)


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
        return replace_surrogates(value)
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
    for part, attached in leaves(message, defects):
        _guard(doc, take_leaf, doc, part, attached, texts, defects)
    doc["text"] = "\n".join(texts) if texts else None


def _first(headers: Headers, name: str) -> str | None:
    return next(iter(_all(headers, name)), None)


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
