"""Describe attachments for the document: TNEF unpacked, names made safe, types sniffed,
invitations summarised, and each pointing at the object that stores its bytes.

``unpacked`` lists the files inside every TNEF attachment (winmail.dat) right after it, each
with ``parent`` = the sha256 of the TNEF, within ``MAX_TNEF_DEPTH`` levels of embedded
messages and the message's decoding budget. ``entry`` builds one attachment object.
"""

from __future__ import annotations

from typing import Any

from ingest import ical, keys, tnef
from ingest.bodies import MAX_PARTS, Extracted, Found, found
from ingest.filenames import safe_filename
from ingest.sniff import sniff

MAX_TNEF_DEPTH = 3

_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_CALENDAR_TYPES = frozenset({"text/calendar", "application/ics", "text/x-vcalendar"})


def unpacked(out: Extracted, defects: set[str]) -> list[Found]:
    """The attachments in order, each TNEF one followed by the files it carries."""
    listed: list[Found] = []
    for item in out.attachments:
        listed.append(item)
        listed.extend(_tnef_files(item, out, 1, defects))
    if len(listed) > MAX_PARTS:
        defects.add("too-many-parts")
    return listed[:MAX_PARTS]


def entry(item: Found, prefix: str, account: str, defects: set[str]) -> dict[str, Any]:
    """The document's object for one attachment."""
    sniffed = sniff(item.data)
    return {
        "filename": item.filename,
        "filename_safe": safe_filename(item.filename, item.content_type),
        "content_type": item.content_type,
        "sniffed_type": sniffed,
        "size": len(item.data),
        "sha256": item.sha256,
        "content_id": item.content_id,
        "disposition": item.disposition,
        "key": _key(prefix, account, item.sha256, defects),
        "parent": item.parent,
        "calendar": _calendar(item, sniffed, defects),
        "tnef_body": _tnef_body(item, defects),
    }


def _tnef_files(item: Found, out: Extracted, depth: int, defects: set[str]) -> list[Found]:
    """The files of a TNEF attachment (and of messages embedded in it), spent from the budget."""
    if not tnef.is_tnef(item.data):
        if item.content_type in _TNEF_TYPES:
            defects.add("invalid-tnef")
        return []
    if depth > MAX_TNEF_DEPTH:
        defects.add("tnef-too-deep")
        return []
    files: list[Found] = []
    for inner in tnef.unpack(item.data, defects):
        if not out.spend(len(inner.data), defects):
            continue
        child = found(
            inner.filename,
            inner.content_type or "application/octet-stream",
            inner.data,
            disposition="attachment",
            content_id=inner.content_id,
            parent=item.sha256,
        )
        files.append(child)
        files.extend(_tnef_files(child, out, depth + 1, defects))
    return files


def _key(prefix: str, account: str, sha256: str, defects: set[str]) -> str | None:
    """Where the attachment's bytes are stored; None (noted) for an unusable account name."""
    try:
        return keys.attachment_key(prefix, account, sha256)
    except ValueError:
        defects.add("invalid-account")
        return None


def _calendar(item: Found, sniffed: str | None, defects: set[str]) -> dict[str, Any] | None:
    """The invitation summary of a calendar attachment (by type, sniffed type or .ics name)."""
    named_ics = (item.filename or "").lower().endswith(".ics")
    if item.content_type in _CALENDAR_TYPES or sniffed == "text/calendar" or named_ics:
        return ical.summarise(item.data, item.charset, defects)
    return None


def _tnef_body(item: Found, defects: set[str]) -> dict[str, Any] | None:
    """The message body a TNEF attachment carries (its RTF de-encapsulated), else None."""
    if not tnef.is_tnef(item.data):
        return None
    found = tnef.body(item.data, defects)
    if found is None:
        return None
    return {"source": found.source, "text": found.text, "html": found.html}
