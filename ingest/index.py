"""The archive index: one NDJSON row per stored message, built from its JSON document.

A row is a pure function of the document (and the key prefix), so the poll's hook and
``ingest index rebuild`` write the very same bytes. Rows live beside the objects in
hive-style partitions (``{prefix}/index/account=A/day=YYYY-MM-DD/{sha}.ndjson``, day = the
UTC day of the message's Date header; undated mail goes to ``1970-01-01``), one object per
message under a content-derived key, written create-only before the ledger mark: a crash
before the mark re-runs the hook, which finds the row there (never a duplicate), and the
mark is never set before the row exists (never lost).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ingest import keys
from ingest.errors import IngestError
from ingest.interfaces import BlobStore, Put
from ingest.model import StoredMessage
from ingest.spool import Spool

CONTENT_TYPE = "application/x-ndjson"


def day_of(doc: dict[str, Any]) -> str:
    """The partition day of a document: its Date's UTC day, or 1970-01-01 (undated, pre-1970)."""
    date = doc.get("date")
    if isinstance(date, str) and len(date) >= 10 and date[:10] >= keys.UNDATED_DAY:
        return date[:10]
    return keys.UNDATED_DAY


def _addresses(doc: dict[str, Any], field: str) -> list[str]:
    return [a["address"] for a in doc.get(field) or [] if a.get("address")]


def _attachment(att: dict[str, Any]) -> dict[str, Any]:
    return {
        "filename": att.get("filename"),
        "content_type": att.get("content_type"),
        "size": att.get("size"),
        "sha256": att.get("sha256"),
        "key": att.get("key"),
    }


def _flags(doc: dict[str, Any]) -> dict[str, Any]:
    cls = doc.get("classification") or {}
    mailing_list = cls.get("mailing_list") or {}
    return {
        "auto_reply": bool(cls.get("auto_reply")),
        "bounce": cls.get("bounce") is not None,
        "mailing_list": mailing_list.get("id") if mailing_list else None,
        "suspicious_display_name": bool(cls.get("suspicious_display_name")),
        "parse_error": doc.get("parse_error") is not None,
        "defects": len(doc.get("defects") or []),
    }


def build_row(doc: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The index row of one JSON document (see the README for every column)."""
    account, sha = str(doc["account"]), str(doc["sha256"])
    senders = doc.get("from") or []
    return {
        "account": account,
        "uidl": doc.get("uidl"),
        "sha256": sha,
        "raw_key": doc.get("raw_key"),
        "json_key": keys.json_key(prefix, account, sha),
        "message_id": doc.get("message_id"),
        "date": doc.get("date"),
        "from": _addresses(doc, "from"),
        "from_name": (senders[0].get("name") or None) if senders else None,
        "to": _addresses(doc, "to"),
        "cc": _addresses(doc, "cc"),
        "subject": doc.get("subject"),
        "size": doc.get("size"),
        "attachments": [_attachment(a) for a in doc.get("attachments") or []],
        "flags": _flags(doc),
    }


def row_key(doc: dict[str, Any], prefix: str) -> str:
    return keys.index_key(prefix, str(doc["account"]), day_of(doc), str(doc["sha256"]))


def row_bytes(row: dict[str, Any]) -> bytes:
    """One NDJSON line: sorted keys, no whitespace, UTF-8 (deterministic)."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode() + b"\n"


def write_row(store: BlobStore, doc: dict[str, Any], prefix: str) -> Put:
    """Create the document's row unless it exists (an existing row is kept as it is)."""
    body = Spool.of(row_bytes(build_row(doc, prefix)))
    return store.put(row_key(doc, prefix), body, CONTENT_TYPE, must_match=False)


def index_hook(store: BlobStore, prefix: str) -> Callable[[StoredMessage], None]:
    """The poll hook: write the stored message's row before its ledger mark."""

    def hook(stored: StoredMessage) -> None:
        write_row(store, stored.document, prefix)

    return hook


@dataclass(slots=True)
class RebuildReport:
    documents: int = 0
    created: int = 0
    rewritten: int = 0
    unchanged: int = 0
    failed: int = 0


def rebuild(
    store: BlobStore,
    prefix: str,
    account: str,
    *,
    progress: Callable[[], None] = lambda: None,
) -> RebuildReport:
    """Make the rows of ``account`` match its JSON documents: missing rows are created and
    rows that differ from their document are replaced (rows are derived data)."""
    existing = set(store.keys(keys.index_prefix(prefix, account)))
    report = RebuildReport()
    for json_key in document_keys(store, prefix, account):
        report.documents += 1
        try:
            _rebuild_one(store, prefix, json_key, existing, report)
        except (IngestError, ValueError, KeyError):
            report.failed += 1
        progress()
    return report


def document_keys(store: BlobStore, prefix: str, account: str) -> Iterable[str]:
    """Every JSON document key of ``account``."""
    for key in store.keys(keys.account_prefix(prefix, account, "json")):
        if key.endswith(".json") and keys.sha_of_key(key):
            yield key


def _rebuild_one(
    store: BlobStore, prefix: str, json_key: str, existing: set[str], report: RebuildReport
) -> None:
    doc = json.loads(store.get(json_key))
    key, body = row_key(doc, prefix), row_bytes(build_row(doc, prefix))
    if key not in existing:
        store.put(key, Spool.of(body), CONTENT_TYPE, must_match=False)
        report.created += 1
    elif store.get(key) != body:
        store.replace(key, Spool.of(body), CONTENT_TYPE)
        report.rewritten += 1
    else:
        report.unchanged += 1


def sync_row(store: BlobStore, doc: dict[str, Any], prefix: str) -> None:
    """After a document was rewritten (``ingest reparse``): its row follows it."""
    store.replace(row_key(doc, prefix), Spool.of(row_bytes(build_row(doc, prefix))), CONTENT_TYPE)
