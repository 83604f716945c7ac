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
import json
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import closing, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from ingest import keys
from ingest.documents import DocumentSpec, Parser, build_document, document_body
from ingest.errors import LockLost, PermanentError, TransientError
from ingest.failpoints import failpoint
from ingest.interfaces import BlobStore, Guard, Ledger, MailboxSession, Protecting, Put
from ingest.model import (
    FetchedMessage,
    LedgerRecord,
    MailboxEntry,
    PollReport,
    State,
    StoredMessage,
    header_block,
    message_id_of,
)
from ingest.rules import failure_record, prune_plan, usable_entries
from ingest.spool import Spool

_MARK_CHUNK = 1000  # UIDLs per read-back and write of the ``deleted`` marks after QUIT

StoredHook = Callable[[StoredMessage], None]
"""Called in a store thread once a message's objects are in, before its ``stored`` mark."""

ProgressHook = Callable[[int, int], None]
"""Called in the poll's thread with (messages handled, messages to fetch in this poll): once
with 0 before the first RETR, then after each message is stored (or failed)."""


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What one poll of one account needs to know."""

    account: str
    prefix: str = ""
    delete: bool = True
    grace_seconds: float = 7 * 86400
    quarantine_after: int = 3
    parse_max_bytes: int = 25 * 1024 * 1024
    max_message_size: int | None = None  # larger messages are left on the server
    oversize: str = "leave"  # or "store_raw": stored raw, headers-only JSON, then deleted
    ticket_pattern: str | None = None
    store_concurrency: int = 4  # messages stored at once (threads) while RETR goes on
    delete_after_seconds: float | None = None  # delete: after_days:N (kept on the server)


@dataclass(frozen=True, slots=True)
class _Done:
    """What storing one message came to (computed in a worker thread)."""

    record: LedgerRecord | None = None  # None: it failed with ``error``
    put: Put | None = None  # None: already stored, the server only rewrote it
    size: int = 0
    parse_failed: bool = False
    error: PermanentError | None = None


_Pending = deque[tuple[MailboxEntry, LedgerRecord | None, Future[_Done]]]
"""Messages handed to the store threads, oldest first: entry, ledger record, outcome."""


def _raised(future: Future[_Done]) -> bool:
    """Storing this message failed with an exception: stop fetching more at once."""
    return future.done() and future.exception() is not None


@dataclass(slots=True)
class _Poll:
    plan: PollPlan
    session: MailboxSession
    ledger: Ledger
    store: BlobStore
    guard: Guard
    clock: Callable[[], float]
    parse: Parser | None  # None: ingest.parse.parse_message (imported on the first message)
    report: PollReport
    log: Any
    hooks: tuple[StoredHook, ...] = ()
    safe: set[int] = field(default_factory=set)  # numbers of messages known to be stored
    progress: ProgressHook | None = None
    to_fetch: int = 0
    handled: int = 0

    @property
    def spec(self) -> DocumentSpec:
        plan = self.plan
        return DocumentSpec(plan.account, plan.prefix, plan.ticket_pattern, plan.parse_max_bytes)

    def unstored(self) -> set[int]:
        """Messages retrieved in this session and not stored: QUIT could let the server
        consume them (``EXPIRE 0``, Gmail), so while this is not empty we never QUIT."""
        return self.session.retrieved() - self.safe

    def run(self) -> PollReport:
        fingerprint = None if self.plan.delete else self.session.fingerprint()
        if fingerprint is not None and self._unchanged(fingerprint):
            self.guard.check()
            return self._commit({})
        entries = usable_entries(self.session.listing(), self.log)
        failpoint("after_listing")
        self.report.listed = len(entries)
        records, total = self.ledger.lookup([e.uidl for e in entries])
        self.report.pruned = self._prune({e.uidl for e in entries}, len(records), total)
        marked: dict[int, str] = {}
        fetch = self._triage(entries, records, marked)
        self._fetch_and_store(fetch, records, marked)
        self._warn_if_rekeyed()
        self.guard.check()
        if self.unstored():
            return self._end_without_commit()
        report = self._commit(marked)
        if fingerprint is not None and not marked and total == len(records):
            self._remember(fingerprint, None if fetch else total)
        return report

    # -- an unchanged kept mailbox ------------------------------------------------------

    _NOTED = ("listed", "already_stored", "quarantined", "oversize")

    def _unchanged(self, fingerprint: str) -> bool:
        """Keep mode: the mailbox is as the last completed poll left it (same STAT and UIDL
        listing, ledger not written since). Then there is nothing to do, and the per-UIDL
        lookup of a large kept mailbox is skipped; the counts that poll noted are reported."""
        note, size = self.ledger.snapshot()
        try:
            known = json.loads(note) if note else {}
        except ValueError:
            return False
        if not isinstance(known, dict):
            return False
        if (known.get("fingerprint"), known.get("records")) != (fingerprint, size):
            return False
        if known.get("settings") != self._triage_settings():
            return False  # e.g. a larger max_message_size: what was left may be fetched now
        for name in self._NOTED:
            setattr(self.report, name, int(known.get(name, 0)))
        self._advance(0)
        self.log.info("mailbox.unchanged", listed=self.report.listed)
        return True

    def _triage_settings(self) -> str:
        """The settings that decide what a poll leaves on the server (besides the ledger)."""
        return f"{self.plan.max_message_size}:{self.plan.oversize}"

    def _remember(self, fingerprint: str, records: int | None) -> None:
        """After a keep-mode poll that committed with every listed message accounted for (and
        no ledger entry unlisted): what the next poll of the same mailbox would find, where
        what this poll stored counts as already stored. ``records`` is the ledger's size, or
        None when this poll wrote to the ledger (it is then read back)."""
        note: dict[str, object] = {name: getattr(self.report, name) for name in self._NOTED}
        note["already_stored"] = self.report.already_stored + self.report.stored
        note.update(fingerprint=fingerprint, settings=self._triage_settings())
        try:
            note["records"] = self.ledger.snapshot()[1] if records is None else records
            self.ledger.remember(json.dumps(note))
        except (LockLost, TransientError) as err:  # committed already; only the shortcut is lost
            self.log.info("mailbox.snapshot_not_kept", error=str(err))

    def _triage(
        self,
        entries: list[MailboxEntry],
        records: dict[str, LedgerRecord],
        marked: dict[int, str],
    ) -> list[MailboxEntry]:
        """What to fetch; messages stored in an earlier session are DELEd right away."""
        fetch = []
        for entry in entries:
            known = records.get(entry.uidl)
            if self._oversize(entry):
                continue
            if not self._already_handled(entry, known):
                fetch.append(entry)
            elif known is not None and known.state is State.STORED:
                self._delete(entry, known, marked)
        return fetch

    def _commit(self, marked: dict[int, str]) -> PollReport:
        """QUIT, then mark ``deleted`` what the server accepted to delete."""
        failpoint("before_quit")
        self.session.commit()
        failpoint("after_quit")
        for number in self.session.refused_deletes():
            marked.pop(number, None)
        self.log.info("poll.committed", deleted=len(marked))
        self.report.deleted = len(marked)
        self._mark_deleted(list(marked.values()))
        failpoint("after_mark_deleted")
        self.report.outcome = "ok"
        return self.report

    def _mark_deleted(self, uidls: list[str]) -> None:
        """After QUIT: mark ``deleted``, a chunk at a time, reading each record back from
        the ledger (holding every record until QUIT made memory grow with the mailbox)."""
        for i in range(0, len(uidls), _MARK_CHUNK):
            found, _ = self.ledger.lookup(uidls[i : i + _MARK_CHUNK])
            self.ledger.put({u: replace(r, state=State.DELETED) for u, r in found.items()})

    def _oversize(self, entry: MailboxEntry) -> bool:
        """LIST sizes decide before download: too large a message stays on the server,
        unless the ``store_raw`` policy has it fetched (see :meth:`_spec_for`)."""
        if not self._too_large(entry):
            return False
        limit = self.plan.max_message_size
        if self.plan.oversize == "store_raw":
            self.log.warning("message.oversize_raw", uidl=entry.uidl, size=entry.size, limit=limit)
            return False
        self.report.oversize += 1
        self.log.warning("message.oversize_left", uidl=entry.uidl, size=entry.size, limit=limit)
        return True

    def _too_large(self, entry: MailboxEntry) -> bool:
        limit = self.plan.max_message_size
        return limit is not None and entry.size > limit

    def _spec_for(self, entry: MailboxEntry) -> DocumentSpec:
        """An oversize message (``store_raw``) gets a headers-only JSON, as above
        ``parse_max_bytes``."""
        return replace(self.spec, parse_max_bytes=0) if self._too_large(entry) else self.spec

    def _already_handled(self, entry: MailboxEntry, record: LedgerRecord | None) -> bool:
        """True for a quarantined message (left alone) or one stored in an earlier session
        whose size and header block are unchanged; anything else is fetched and compared."""
        if record is None or record.size != entry.size:
            return False
        if record.state is State.QUARANTINED:
            self.report.quarantined += 1
            return True
        if record.state is not State.STORED or not self._headers_match(entry, record):
            return False
        self.safe.add(entry.number)
        self.report.already_stored += 1
        if record.gone_since is not None:
            self.ledger.put({entry.uidl: replace(record, gone_since=None)})
        return True

    def _headers_match(self, entry: MailboxEntry, record: LedgerRecord) -> bool:
        """Before DELE of a message stored earlier, a cheap check of its header block (TOP).

        Without UIDL the identity itself comes from the headers, so only the full
        comparison after RETR (:meth:`_same_content`) can tell.
        """
        if not self._due(record):
            return True
        if entry.derived:
            return False
        head = self.session.headers(entry)
        if head is None or not record.head_sha256:
            return True
        if hashlib.sha256(head).hexdigest() == record.head_sha256:
            return True
        self.log.info("message.headers_changed", uidl=entry.uidl)
        return False

    @staticmethod
    def _same_content(known: LedgerRecord | None, raw: Spool) -> bool:
        """The message stored under this UIDL before: the same bytes, or the same body and
        Message-ID under headers the server rewrote."""
        if known is None or known.state not in (State.STORED, State.DELETED):
            return False
        if raw.sha256 == known.sha256:
            return True
        if not known.body_sha256:
            return False
        return (
            raw.body_sha256 == known.body_sha256
            and message_id_of(header_block(raw.head())) == known.message_id
        )

    def _delete(self, entry: MailboxEntry, record: LedgerRecord, marked: dict[int, str]) -> None:
        """DELE (in delete mode); a refused one is left out of the ledger's ``deleted`` marks."""
        if self._due(record):
            self.session.delete(entry)
            failpoint("after_dele")
            marked[entry.number] = entry.uidl

    def _due(self, record: LedgerRecord) -> bool:
        """Whether a stored message is to be deleted now: in delete mode, at once or (with
        ``delete_after_seconds``) once that long has passed since it was stored."""
        wait = self.plan.delete_after_seconds
        return self.plan.delete and (wait is None or record.stored_at + wait <= self.clock())

    def _fetch_and_store(
        self,
        fetch: list[MailboxEntry],
        records: dict[str, LedgerRecord],
        marked: dict[int, str],
    ) -> None:
        """RETR (pipelined) while up to ``store_concurrency`` messages are being stored in
        worker threads; whenever that many are in flight, those whose objects are in are
        marked ``stored`` (one ledger write) and DELEd here, in order. A store that raised
        ends the loop at once."""
        limit = max(1, self.plan.store_concurrency)
        self.to_fetch = len(fetch)
        self._advance(0)
        pending: _Pending = deque()
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="store") as pool:
            try:
                for entry, result in self.session.retrieve_many(fetch):
                    failpoint("after_retr")
                    known = records.get(entry.uidl)
                    self.report.fetched += not isinstance(result, PermanentError)
                    pending.append((entry, known, pool.submit(self._work, entry, result, known)))
                    if len(pending) >= limit or _raised(pending[0][2]):
                        self._finish_ready(pending, marked)
                while pending:
                    self._finish_ready(pending, marked)
            except BaseException:
                self._salvage(pending)
                raise

    def _salvage(self, pending: _Pending) -> None:
        """After a failure: messages whose objects are in still get their ``stored`` mark, so
        the next poll only DELEs them (no DELE now: the session is about to be dropped)."""
        for entry, _, future in pending:
            with suppress(Exception):
                done = future.result()
                if done.record is not None:
                    self.ledger.put({entry.uidl: done.record})
                    self.safe.add(entry.number)

    def _work(
        self, entry: MailboxEntry, result: Spool | PermanentError, known: LedgerRecord | None
    ) -> _Done:
        """In a worker thread: store one retrieved message (objects only, no ledger, no POP3)."""
        if isinstance(result, PermanentError):
            return _Done(error=result)
        with closing(result):
            try:
                if known is not None and self._same_content(known, result):
                    return _Done(record=self._refreshed(entry, known, result))
                return self._store(FetchedMessage(self.plan.account, entry, result))
            except PermanentError as err:
                return _Done(error=err)

    def _finish_ready(self, pending: _Pending, marked: dict[int, str]) -> None:
        """In the poll's thread: wait for the oldest message, then take it and every next one
        already done, in order; record the outcomes, mark the stored ones ``stored`` in one
        ledger write, then DELE them. A message whose storing raised stays in ``pending``
        (with those after it) for :meth:`_salvage`."""
        wait([pending[0][2]])
        stored: list[tuple[MailboxEntry, LedgerRecord]] = []
        try:
            while pending and pending[0][2].done():
                entry, known, future = pending[0]
                done = future.result()
                pending.popleft()
                self._advance(1)
                if done.record is None:
                    assert done.error is not None
                    self._failed(entry, known, done.error)
                    continue
                self._count(done, known)
                stored.append((entry, done.record))
        finally:
            if stored:
                self.ledger.put({entry.uidl: record for entry, record in stored})
                failpoint("after_mark_stored")
                self.safe.update(entry.number for entry, _ in stored)
        for entry, record in stored:
            self._delete(entry, record, marked)

    def _advance(self, count: int) -> None:
        self.handled += count
        if self.progress is not None:
            self.progress(self.handled, self.to_fetch)

    def _refreshed(self, entry: MailboxEntry, known: LedgerRecord, raw: Spool) -> LedgerRecord:
        """Already stored: only the server's copy changed (size, headers). Nothing is stored
        again; the ledger learns the new size and header hash."""
        if raw.sha256 != known.sha256:
            self.log.info("message.rewritten_by_server", uidl=entry.uidl, size=entry.size)
        head = hashlib.sha256(header_block(raw.head())).hexdigest()
        return replace(
            known, state=State.STORED, size=entry.size, head_sha256=head, gone_since=None
        )

    def _failed(
        self, entry: MailboxEntry, record: LedgerRecord | None, err: PermanentError
    ) -> None:
        """Count a message-specific failure; quarantine it after ``quarantine_after`` in a row."""
        reason = f"{type(err).__name__}: {err}"[:500]
        failed = failure_record(entry, record, reason, self.clock(), self.plan.quarantine_after)
        self.ledger.put({entry.uidl: failed})
        if failed.state is not State.QUARANTINED:
            raise err
        self.log.error(
            "message.quarantined", uidl=entry.uidl, failures=failed.failures, reason=reason
        )
        self.report.quarantined += 1

    def _store(self, msg: FetchedMessage) -> _Done:
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
        return _Done(record, put, msg.raw.size, bool(doc.get("parse_error")))

    def _count(self, done: _Done, known: LedgerRecord | None) -> None:
        self.report.parse_failures += done.parse_failed
        if done.put is None:  # the same message, rewritten by the server: nothing stored
            self.report.already_stored += 1
        elif done.put is Put.CREATED:
            self.report.stored += 1
            self.report.bytes_stored += done.size
        else:
            self.report.already_stored += 1
            self.report.rekeyed += known is None

    def _warn_if_rekeyed(self) -> None:
        """Many 'new' UIDLs whose content is already stored: the UIDL scheme changed
        (or the ledger was lost). No duplicate objects result, but an operator should know."""
        if self.report.rekeyed >= 10 and self.report.rekeyed * 2 >= self.report.fetched:
            self.log.error(
                "mailbox.uidl_scheme_changed", rekeyed=self.report.rekeyed,
                fetched=self.report.fetched,
            )  # fmt: skip

    def _end_without_commit(self) -> PollReport:
        """A quarantined message was retrieved: QUIT could let the server consume it."""
        self.session.abandon()
        self.report.outcome = "partial"
        self.log.warning("poll.not_committed", reason="a retrieved message was quarantined")
        return self.report

    def _prune(self, present: set[str], found: int, total: int) -> int:
        if total <= found:  # every ledger entry is still listed: nothing to read or prune
            return 0
        fresh, expired = prune_plan(
            self.ledger.all_records(), present, self.clock(), self.plan.grace_seconds
        )
        self.ledger.put(fresh)
        self.ledger.remove(expired)
        return len(expired)

    def end_after_failure(self) -> None:
        """Leave the server exactly as it was: nothing retrieved-but-unstored is consumed."""
        if self.unstored():
            self.session.abandon()
            return
        try:
            self.session.reset_and_quit()
        except Exception:  # noqa: BLE001 - the connection may already be broken; drop it
            self.session.abandon()


def poll(
    plan: PollPlan,
    session: MailboxSession,
    ledger: Ledger,
    store: BlobStore,
    guard: Guard,
    *,
    clock: Callable[[], float] = time.time,
    parse: Parser | None = None,
    report: PollReport | None = None,
    hooks: tuple[StoredHook, ...] = (),
    progress: ProgressHook | None = None,
) -> PollReport:
    """Run one poll over an authenticated session; the session is ended either way.

    ``report`` (created here when not given) is filled in as the poll goes, so a caller
    that passes its own still sees what was done when the poll raises. ``hooks`` see each
    newly stored message before the ledger marks it (see :class:`StoredMessage`);
    ``progress`` follows the messages being fetched (see :data:`ProgressHook`).
    """
    log = structlog.get_logger("ingest.poll").bind(account=plan.account)
    report = report or PollReport(plan.account)
    state = _Poll(plan, session, ledger, store, guard, clock, parse, report, log, hooks)
    state.progress = progress
    try:
        return state.run()
    except BaseException as err:
        state.report.outcome = "failed"
        state.report.error = str(err)
        state.end_after_failure()
        log.warning("poll.failed", error=str(err), kind=type(err).__name__)
        raise
