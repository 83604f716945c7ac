"""The poll: pure orchestration of one POP3 session over a ledger, a blob store and a lock.

For each listed UIDL the ledger does not know as ``stored``::

    RETR -> put raw (verified) -> parse -> put JSON (verified) -> ledger: stored -> DELE

then QUIT commits and the ledger marks the deleted UIDLs ``deleted``. A UIDL already
``stored`` but still listed (the previous session never reached QUIT) is DELEd again
without being fetched. On any failure nothing is committed: when something retrieved in
this session is not yet stored, the connection is dropped without QUIT (QUIT would let
a server with ``EXPIRE 0`` consume it); otherwise RSET + QUIT.

This module imports no poplib, boto3 or redis (enforced by import-linter).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from ingest import keys
from ingest.failpoints import failpoint
from ingest.interfaces import BlobStore, Guard, Ledger, MailboxSession, Put
from ingest.model import FetchedMessage, LedgerRecord, MailboxEntry, PollReport, State
from ingest.parse import dump_document, parse_message

_VALID_UIDL = re.compile(r"^[\x21-\x7e]{1,70}$")
Parser = Callable[..., dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What one poll of one account needs to know."""

    account: str
    prefix: str = ""
    delete: bool = True
    grace_seconds: float = 7 * 86400


@dataclass(slots=True)
class _Poll:
    plan: PollPlan
    session: MailboxSession
    ledger: Ledger
    store: BlobStore
    guard: Guard
    clock: Callable[[], float]
    parse: Parser
    report: PollReport
    log: Any
    at_risk: bool = False

    def run(self) -> PollReport:
        entries = usable_entries(self.session.listing(), self.log)
        failpoint("after_listing")
        self.report.listed = len(entries)
        records, total = self.ledger.lookup([e.uidl for e in entries])
        self.report.pruned = self._prune({e.uidl for e in entries}, len(records), total)
        marked: dict[str, LedgerRecord] = {}
        for entry in entries:
            record = self._handle(entry, records.get(entry.uidl))
            if self.plan.delete:
                self.session.delete(entry)
                failpoint("after_dele")
                marked[entry.uidl] = record
        self.guard.check()
        failpoint("before_quit")
        self.session.commit()
        failpoint("after_quit")
        self.log.info("poll.committed", deleted=len(marked))
        self.report.deleted = len(marked)
        self.ledger.put({u: replace(r, state=State.DELETED) for u, r in marked.items()})
        failpoint("after_mark_deleted")
        self.report.outcome = "ok"
        return self.report

    def _handle(self, entry: MailboxEntry, record: LedgerRecord | None) -> LedgerRecord:
        if record is not None and record.state is State.STORED and record.size == entry.size:
            self.report.already_stored += 1
            if record.gone_since is not None:
                record = replace(record, gone_since=None)
                self.ledger.put({entry.uidl: record})
            return record
        self.at_risk = True
        raw = self.session.retrieve(entry)
        failpoint("after_retr")
        self.report.fetched += 1
        record = self._store(FetchedMessage.of(self.plan.account, entry, raw))
        self.ledger.put({entry.uidl: record})
        failpoint("after_mark_stored")
        self.at_risk = False
        return record

    def _store(self, msg: FetchedMessage) -> LedgerRecord:
        log = self.log.bind(uidl=msg.entry.uidl, sha256=msg.sha256)
        raw_key = keys.raw_key(self.plan.prefix, msg.account, msg.sha256)
        json_key = keys.json_key(self.plan.prefix, msg.account, msg.sha256)
        put = self.store.put(raw_key, msg.raw, msg.sha256, "message/rfc822")
        failpoint("after_raw_put")
        doc = self.parse(
            msg.raw, account=msg.account, uidl=msg.entry.uidl, sha256=msg.sha256, raw_key=raw_key
        )
        body = dump_document(doc)
        self.store.put(
            json_key, body, hashlib.sha256(body).hexdigest(), "application/json", must_match=False
        )
        failpoint("after_json_put")
        if doc.get("parse_error"):
            self.report.parse_failures += 1
            log.warning("message.parse_failed", error=doc["parse_error"])
        if put is Put.CREATED:
            self.report.stored += 1
            self.report.bytes_stored += len(msg.raw)
            self.report.keys.append(raw_key)
        else:
            self.report.already_stored += 1
        log.info("message.stored", key=raw_key, size=len(msg.raw), put=put.value)
        return LedgerRecord(
            State.STORED, msg.sha256, msg.entry.size, raw_key, json_key, self.clock()
        )

    def _prune(self, present: set[str], found: int, total: int) -> int:
        if total <= found:
            return 0
        now = self.clock()
        gone = {u: r for u, r in self.ledger.all_records().items() if u not in present}
        expired = [
            u
            for u, r in gone.items()
            if r.gone_since is not None and now - r.gone_since >= self.plan.grace_seconds
        ]
        fresh = {u: replace(r, gone_since=now) for u, r in gone.items() if r.gone_since is None}
        self.ledger.put(fresh)
        self.ledger.remove(expired)
        return len(expired)

    def end_after_failure(self) -> None:
        """Leave the server exactly as it was: nothing retrieved-but-unstored is consumed."""
        if self.at_risk:
            self.session.abandon()
            return
        try:
            self.session.reset_and_quit()
        except Exception:  # noqa: BLE001 - the connection may already be broken; drop it
            self.session.abandon()


def usable_entries(entries: list[MailboxEntry], log: Any) -> list[MailboxEntry]:
    """Entries with a valid, unique UIDL; the rest stay on the server untouched."""
    counts = Counter(e.uidl for e in entries)
    usable = []
    for entry in entries:
        if not _VALID_UIDL.match(entry.uidl):
            log.warning("mailbox.invalid_uidl", number=entry.number)
        elif counts[entry.uidl] > 1:
            log.warning("mailbox.duplicate_uidl", number=entry.number, uidl=entry.uidl)
        else:
            usable.append(entry)
    return usable


def poll(
    plan: PollPlan,
    session: MailboxSession,
    ledger: Ledger,
    store: BlobStore,
    guard: Guard,
    *,
    clock: Callable[[], float] = time.time,
    parse: Parser = parse_message,
    report: PollReport | None = None,
) -> PollReport:
    """Run one poll over an authenticated session; the session is ended either way.

    ``report`` (created here when not given) is filled in as the poll goes, so a caller
    that passes its own still sees what was done when the poll raises.
    """
    log = structlog.get_logger("ingest.poll").bind(account=plan.account)
    report = report or PollReport(plan.account)
    state = _Poll(plan, session, ledger, store, guard, clock, parse, report, log)
    try:
        return state.run()
    except BaseException as err:
        state.report.outcome = "failed"
        state.report.error = str(err)
        state.end_after_failure()
        log.warning("poll.failed", error=str(err), kind=type(err).__name__)
        raise
