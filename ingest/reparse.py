"""``ingest reparse``: rebuild JSON documents from the stored raw messages.

Raw is the source of truth: after a parser upgrade (or a bug fix) every document can be
rebuilt. A document is replaced only when the rebuilt bytes differ; the UIDL comes from
the existing document, else from the ledger, else it is left empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from ingest import keys
from ingest.config import Settings
from ingest.documents import DocumentSpec, build_document, document_body
from ingest.errors import IngestError
from ingest.index import sync_row
from ingest.interfaces import BlobStore
from ingest.ledger import RedisLedger
from ingest.spool import Spool


@dataclass(slots=True)
class ReparseReport:
    seen: int = 0
    rewritten: int = 0
    unchanged: int = 0
    failed: int = 0


def raw_keys(store: BlobStore, settings: Settings, name: str) -> list[str]:
    prefix = keys.raw_prefix(settings.storage.prefix, name)
    return [k for k in store.keys(prefix) if keys.sha_of_raw_key(k)]


def reparse(
    settings: Settings,
    name: str,
    store: BlobStore,
    client: redis.Redis,
    raw: Iterable[str],
    *,
    progress: Callable[[], None] = lambda: None,
) -> ReparseReport:
    """Rebuild the documents of the given raw keys of account ``name``."""
    account = settings.account(name)
    spec = DocumentSpec(name, settings.storage.prefix, account.ticket_pattern,
                        settings.parse_max_bytes)  # fmt: skip
    uidls = {r.sha256: u for u, r in RedisLedger(client, name, "", 1).all_records().items()}
    report = ReparseReport()
    for key in raw:
        report.seen += 1
        try:
            doc = _one(spec, store, key, uidls, report)
            if doc is not None and settings.storage.index:
                sync_row(store, doc, spec.prefix)
        except IngestError:
            report.failed += 1
        progress()
    return report


def _one(
    spec: DocumentSpec, store: BlobStore, key: str, uidls: dict[str, str], report: ReparseReport
) -> dict[str, Any] | None:
    """Rebuild one document; the new document when it was rewritten, else None."""
    sha = keys.sha_of_raw_key(key)
    assert sha is not None
    json_key = keys.json_key(spec.prefix, spec.account, sha)
    try:
        old = store.get(json_key)
        uidl = str(json.loads(old).get("uidl") or uidls.get(sha, ""))
    except (IngestError, ValueError):
        old, uidl = b"", uidls.get(sha, "")
    raw = Spool.of(store.get(key))
    try:
        doc = build_document(spec, raw, uidl, store)
    finally:
        raw.close()
    body = document_body(doc)
    if body.read() == old:
        report.unchanged += 1
        return None
    store.replace(json_key, body, "application/json")
    report.rewritten += 1
    return doc
