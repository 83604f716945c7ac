"""Storing one retrieved message, in a store thread: raw first, then its document.

Objects only: nothing here writes the ledger or talks POP3. The poll (``ingest.pipeline``)
takes each :class:`Outcome` back in order, marks the stored messages ``stored`` and only
then DELEs them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any

from ingest import keys
from ingest.documents import DocumentSpec, Parser, build_document, document_body
from ingest.errors import PermanentError
from ingest.failpoints import failpoint
from ingest.interfaces import BlobStore, Protecting, Put
from ingest.model import (
    FetchedMessage,
    LedgerRecord,
    MailboxEntry,
    PollPlan,
    State,
    StoredHook,
    StoredMessage,
    header_block,
    message_id_of,
)
from ingest.spool import Spool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What storing one message came to."""

    record: LedgerRecord | None = None  # None: it failed with ``error``
    put: Put | None = None  # None: already stored, the server only rewrote it
    size: int = 0
    parse_failed: bool = False
    error: PermanentError | None = None


@dataclass(frozen=True, slots=True)
class Storer:
    """Stores the messages of one poll (called from several store threads at once)."""

    plan: PollPlan
    store: BlobStore
    clock: Callable[[], float]
    parse: Parser | None  # None: ingest.parse.parse_message (imported on the first message)
    log: Any
    hooks: tuple[StoredHook, ...] = ()

    def work(
        self, entry: MailboxEntry, result: Spool | PermanentError, known: LedgerRecord | None
    ) -> Outcome:
        """Store one retrieved message (or pass on why it could not be retrieved)."""
        if isinstance(result, PermanentError):
            return Outcome(error=result)
        with closing(result):
            try:
                if known is not None and same_content(known, result):
                    return Outcome(record=self._refreshed(entry, known, result))
                return self._store(FetchedMessage(self.plan.account, entry, result))
            except PermanentError as err:
                return Outcome(error=err)

    def _spec_for(self, entry: MailboxEntry) -> DocumentSpec:
        """An oversize message (``store_raw``) gets a headers-only JSON, as above
        ``parse_max_bytes``."""
        plan = self.plan
        limit = 0 if plan.too_large(entry) else plan.parse_max_bytes
        return DocumentSpec(plan.account, plan.prefix, plan.ticket_pattern, limit)

    def _store(self, msg: FetchedMessage) -> Outcome:
        """Raw first (the source of truth), then the JSON built from it; both verified."""
        log = self.log.bind(uidl=msg.entry.uidl, sha256=msg.sha256)
        raw_key = keys.raw_key(self.plan.prefix, msg.account, msg.sha256)
        json_key = keys.json_key(self.plan.prefix, msg.account, msg.sha256)
        put = self.store.put(raw_key, msg.raw, "message/rfc822")
        storage = self.store.protection(raw_key) if isinstance(self.store, Protecting) else {}
        failpoint("after_raw_put")
        spec = self._spec_for(msg.entry)
        doc = build_document(spec, msg.raw, msg.entry.uidl, self.store, self.parse)
        self.store.put(json_key, document_body(doc), "application/json", must_match=False)
        failpoint("after_json_put")
        stored = StoredMessage(
            msg.account, msg.entry.uidl, msg.sha256, msg.raw.size, raw_key, json_key, doc
        )
        for hook in self.hooks:
            hook(stored)
        failpoint("after_hooks")
        if doc.get("parse_error"):
            log.warning("message.parse_failed", error=doc["parse_error"])
        extra = {"storage": storage} if storage else {}
        log.info("message.stored", key=raw_key, size=msg.raw.size, put=put.value, **extra)
        head = header_block(msg.raw.head())
        record = LedgerRecord(
            State.STORED, msg.sha256, msg.entry.size, raw_key, json_key, self.clock(),
            head_sha256=hashlib.sha256(head).hexdigest(),
            body_sha256=msg.raw.body_sha256, message_id=message_id_of(head), storage=storage,
        )  # fmt: skip
        return Outcome(record, put, msg.raw.size, bool(doc.get("parse_error")))

    def _refreshed(self, entry: MailboxEntry, known: LedgerRecord, raw: Spool) -> LedgerRecord:
        """Already stored: only the server's copy changed (size, headers). Nothing is stored
        again; the ledger learns the new size and header hash."""
        if raw.sha256 != known.sha256:
            self.log.info("message.rewritten_by_server", uidl=entry.uidl, size=entry.size)
        head = hashlib.sha256(header_block(raw.head())).hexdigest()
        return replace(
            known, state=State.STORED, size=entry.size, head_sha256=head, gone_since=None
        )


def same_content(known: LedgerRecord, raw: Spool) -> bool:
    """The message stored under this UIDL before: the same bytes, or the same body and
    Message-ID under headers the server rewrote."""
    if known.state not in (State.STORED, State.DELETED):
        return False
    if raw.sha256 == known.sha256:
        return True
    if not known.body_sha256:
        return False
    return (
        raw.body_sha256 == known.body_sha256
        and message_id_of(header_block(raw.head())) == known.message_id
    )
