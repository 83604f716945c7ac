"""Turn one raw RFC 5322 message into a deterministic JSON document, without ever raising.

The document's shape is ``ingest/schema/message.schema.json`` (``SCHEMA_VERSION``); this
module runs the extraction steps, each under its own guard, and ``attachment_payloads``
hands the pipeline the bytes of exactly the attachments a document lists.

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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from email.message import Message
from email.policy import Compat32
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from ingest.addresses import AddressBudget, extract_mailboxes
from ingest.attachments import entry, unpacked
from ingest.bodies import BoundedMessage, Extracted, Found, extract
from ingest.classify import classify
from ingest.headers import (
    clean_text,
    decode_text,
    raw_value,
    recover_8bit,
    replace_surrogates,
    unfold_raw,
)
from ingest.mime import parse_bytes
from ingest.render import html_to_text
from ingest.reply import split_reply
from ingest.threads import message_id, message_ids, thread_subject, ticket_ref

PARSER_VERSION: int = 3
SCHEMA_VERSION: int = 2

Headers = list[tuple[str, str]]
# Header fields RFC 5322 allows at most once.
_SINGLETONS = "bcc cc date from in-reply-to message-id references reply-to sender subject to"
_ADDRESS_FIELDS = (
    ("from", "from"), ("sender", "sender"), ("reply_to", "reply-to"), ("to", "to"), ("cc", "cc"),
    ("bcc", "bcc"), ("delivered_to", "delivered-to"), ("return_path", "return-path"),
)  # fmt: skip
_NO_CLASSIFICATION = {
    "auto_reply": False, "auto_reply_reason": None, "bounce": None, "mailing_list": None,
    "authentication": None, "suspicious_display_name": False,
}  # fmt: skip


class _Policy(Compat32):
    """compat32, but ``Message.get`` returns 8-bit header bytes decoded, not U+FFFD-mangled.

    Filenames, charsets and content types are read through it.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return recover_8bit(value, set())


_POLICY = _Policy(message_factory=BoundedMessage)


Payload = tuple[str, str, bytes]  # an attachment's sha256, declared type, decoded bytes


@dataclass(slots=True)
class _Job:
    """One message being described: the document so far and what the steps share."""

    doc: dict[str, Any]
    message: Message
    raw_headers: Headers  # unfolded, 8-bit bytes still surrogate escapes
    headers: Headers  # unfolded, 8-bit bytes decoded; RFC 2047 words still encoded
    defects: set[str]
    prefix: str
    ticket_pattern: str | None
    payloads: list[Payload] | None = None


def parse_message(
    raw: bytes,
    *,
    account: str,
    uidl: str,
    sha256: str,
    raw_key: str,
    prefix: str = "",
    ticket_pattern: str | None = None,
    payloads: list[Payload] | None = None,
) -> dict[str, Any]:
    """Build the structured JSON document for one raw RFC 5322 message. Never raises.

    Every key is always present. Problems become ``defects``; an unexpected exception becomes
    ``parse_error`` (its type and message, never message content), and the document keeps
    what the other steps extracted. ``prefix`` and ``account`` build the attachments' object
    keys; ``ticket_pattern`` is the account's regular expression for ``ticket_ref``. When
    ``payloads`` is given, the listed attachments' (sha256, type, bytes) are appended to it,
    once per sha256, from the same parse (what :func:`attachment_payloads` yields).
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
        **dict.fromkeys(("thread_subject", "ticket_ref", "text", "html", "text_from_html"), None),
        **{key: [] for key, _ in _ADDRESS_FIELDS},
        **{"references": [], "headers": [], "reply": None, "attachments": []},
        **{"classification": dict(_NO_CLASSIFICATION), "defects": [], "parse_error": None},
    }
    defects: set[str] = set()
    _guard(doc, lambda: _fill(doc, raw, defects, prefix, pattern=ticket_pattern, out=payloads))
    doc["defects"] = sorted(defects)
    return doc


def attachment_payloads(raw: bytes) -> Iterator[Payload]:
    """Yield (sha256, declared content type, decoded bytes) of each attachment the document
    of ``raw`` lists, once per sha256, within the same limits. Never raises.
    """
    try:
        listed = _attachments(parse_bytes(raw, _POLICY), set())[0]
    except Exception:  # noqa: BLE001 - the document then lists no attachment either
        return
    yield from _unique(listed)


def _unique(listed: list[Found]) -> Iterator[Payload]:
    seen: set[str] = set()
    for item in listed:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            yield item.sha256, item.content_type, item.data


def dump_document(doc: dict[str, Any]) -> bytes:
    """Canonical UTF-8 JSON bytes for a document (deterministic: same input -> same bytes).

    Keys sorted, no whitespace, non-ASCII as UTF-8, NaN refused; a lone surrogate (which
    UTF-8 cannot encode) becomes U+FFFD instead of an error.
    """
    fast = _orjson_dumps(doc)
    if fast is not None:
        return fast
    try:
        return _dumps(doc).encode("utf-8")
    except UnicodeEncodeError:
        return _dumps(_scrubbed(doc)).encode("utf-8")


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(
        doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )


def _orjson_dumps(doc: dict[str, Any]) -> bytes | None:
    """The bytes of ``_dumps(doc).encode()`` from orjson, about five times faster on the
    18 MB of documents of a 500-message poll, or None where orjson cannot give them.

    Documents hold only strings, integers, booleans, None, lists and str-keyed dicts (no
    floats: the two libraries spell some differently), and for those both write the same
    text: keys sorted, no spaces, the same escapes (``tests/unit/test_parse.py`` compares
    them on every corpus document and generated values). orjson refuses a lone surrogate
    (which UTF-8 cannot encode), a non-str key and an integer beyond 64 bits: then None, and
    the stdlib's route handles it as before.
    """
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None


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
        _note_error(doc, exc)


def _note_error(doc: dict[str, Any], exc: Exception) -> None:
    if doc["parse_error"] is None:
        doc["parse_error"] = clean_text(f"{type(exc).__name__}: {exc}"[:300], set())


def _fill(
    doc: dict[str, Any],
    raw: bytes,
    defects: set[str],
    prefix: str,
    *,
    pattern: str | None,
    out: list[Payload] | None,
) -> None:
    """Parse, then run each extraction step on its own, so one failure spoils only itself."""
    message = parse_bytes(raw, _POLICY)
    raw_headers = [(name, unfold_raw(str(value))) for name, value in message.raw_items()]
    headers = [(name, recover_8bit(value, defects)) for name, value in raw_headers]
    job = _Job(doc, message, raw_headers, headers, defects, prefix, pattern, out)
    steps = (_fill_headers, _fill_envelope, _fill_addresses, _fill_body, _fill_threading)
    for step in (*steps, _fill_classification):
        _guard(doc, step, job)


def _fill_headers(job: _Job) -> None:
    """Every header in order: name, decoded value, and the raw value where they differ."""
    entries = []
    for (name, value), (_, written) in zip(job.headers, job.raw_headers, strict=True):
        decoded = decode_text(value, job.defects)
        shown = raw_value(written)
        raw = None if shown == decoded else shown
        entries.append({"name": clean_text(name, job.defects), "value": decoded, "raw": raw})
    job.doc["headers"] = entries
    counts = Counter(name.lower() for name, _ in job.headers)
    job.defects.update(f"duplicate-{name}" for name in _SINGLETONS.split() if counts[name] > 1)


def _fill_envelope(job: _Job) -> None:
    doc, headers, defects = job.doc, job.headers, job.defects
    subject = _first(headers, "subject")
    doc["subject"] = None if subject is None else decode_text(subject, defects)
    date = _first(headers, "date")
    if date is None:
        defects.add("missing-date")
    else:
        doc["date_raw"] = clean_text(date.strip(), defects)
        doc["date"] = _parse_date(doc["date_raw"], defects)
    doc["message_id"] = message_id(_first(headers, "message-id"), defects)
    doc["in_reply_to"] = next(iter(message_ids(_all(headers, "in-reply-to"))), None)
    doc["references"] = message_ids(_all(headers, "references"))


def _fill_addresses(job: _Job) -> None:
    budget = AddressBudget()
    for key, field in _ADDRESS_FIELDS:
        values = [v for v in _all(job.headers, field) if v.strip() != "<>"]  # null return path
        found = [pair for v in values for pair in extract_mailboxes(v, budget, job.defects)]
        job.doc[key] = [{"name": name, "address": address} for name, address in found]
    if not _all(job.headers, "from"):
        job.defects.add("missing-from")


def _fill_body(job: _Job) -> None:
    """Bodies and attachments; an HTML-only body is rendered, a text one split as a reply."""
    doc = job.doc
    listed, out = _attachments(job.message, job.defects)
    for exc in out.errors:
        _note_error(doc, exc)
    account = doc["account"]
    doc["attachments"] = [entry(item, job.prefix, account, job.defects) for item in listed]
    if job.payloads is not None:
        job.payloads.extend(_unique(listed))
    doc["text"] = "\n".join(out.texts) if out.texts else None
    doc["html"] = out.html
    if doc["text"] is None and doc["html"] is None:  # Outlook may send only a winmail.dat
        tnef_body = next((a["tnef_body"] for a in doc["attachments"] if a["tnef_body"]), None)
        if tnef_body is not None:
            doc["text"], doc["html"] = tnef_body["text"], tnef_body["html"]
    if doc["text"] is None and doc["html"] is not None:
        doc["text_from_html"] = html_to_text(doc["html"], job.defects)
    body = doc["text"] if doc["text"] is not None else doc["text_from_html"]
    doc["reply"] = None if body is None else split_reply(body)


def _fill_threading(job: _Job) -> None:
    doc = job.doc
    doc["thread_subject"] = thread_subject(doc["subject"])
    body = doc["text"] if doc["text"] is not None else doc["text_from_html"]
    doc["ticket_ref"] = ticket_ref(job.ticket_pattern, doc["subject"], body, job.defects)


def _fill_classification(job: _Job) -> None:
    senders = [item["address"] for item in job.doc["from"]]
    job.doc["classification"] = classify(
        job.message, job.headers, job.doc["subject"], senders, job.defects
    )


def _attachments(message: Message, defects: set[str]) -> tuple[list[Found], Extracted]:
    """The attachments a document lists, TNEF contents included, and the extraction."""
    out = extract(message, defects)
    return unpacked(out, defects), out


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
