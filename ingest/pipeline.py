"""The poll: pure orchestration of one POP3 session over a ledger, a blob store and a lock.

For each listed UIDL the ledger does not know as ``stored``::

    RETR -> put raw (verified) -> parse -> put JSON (verified) -> ledger: stored -> DELE

then QUIT commits and the ledger marks the deleted UIDLs ``deleted``. A UIDL already
``stored`` but still listed (the previous session never reached QUIT) is DELEd again
without being fetched. On any failure nothing is committed: when something retrieved in
this session is not yet stored, the connection is dropped without QUIT (QUIT would let
a server with ``EXPIRE 0`` consume it); otherwise RSET + QUIT.

Each message is stored (raw, document, hooks) by :mod:`ingest.storing` in store threads
while RETR goes on; a kept mailbox found unchanged is settled by :mod:`ingest.snapshot`.
This module imports no poplib, boto3 or redis (enforced by import-linter).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from ingest import snapshot
from ingest.documents import Parser
from ingest.errors import PermanentError
from ingest.failpoints import failpoint
from ingest.interfaces import BlobStore, Guard, Ledger, MailboxSession, Put
from ingest.model import (
    LedgerRecord,
    MailboxEntry,
    PollPlan,
    PollReport,
    State,
    StoredHook,
)
from ingest.rules import failure_record, prune_plan, usable_entries
from ingest.spool import Spool
from ingest.storing import Outcome, Storer

_MARK_CHUNK = 1000  # UIDLs per read-back and write of the ``deleted`` marks after QUIT
_READ_AHEAD = 3  # messages retrieved per store thread before the poll waits for the oldest
_READ_AHEAD_BYTES = 32 * 1024 * 1024  # and at most this much of them (LIST sizes) unstored

ProgressHook = Callable[[int, int], None]
"""Called in the poll's thread with (messages handled, messages to fetch in this poll): once
with 0 before the first RETR, then after each message is stored (or failed)."""


_Pending = deque[tuple[MailboxEntry, LedgerRecord | None, Future[Outcome]]]
"""Messages handed to the store threads, oldest first: entry, ledger record, outcome."""


class _Skipped(Exception):
    """Not stored: the store of an earlier message raised first (whose error the poll
    raises; this one never leaves it)."""


def _full(pending: _Pending, most: int) -> bool:
    """Whether the poll has read far enough ahead of its store threads."""
    return len(pending) >= most or sum(e.size for e, _, _ in pending) > _READ_AHEAD_BYTES


@dataclass(slots=True)
class _Poll:
    plan: PollPlan
    session: MailboxSession
    ledger: Ledger
    storer: Storer
    guard: Guard
    clock: Callable[[], float]
    report: PollReport
    log: Any
    safe: set[int] = field(default_factory=set)  # numbers of messages known to be stored
    progress: ProgressHook | None = None
    to_fetch: int = 0
    handled: int = 0

    def unstored(self) -> set[int]:
        """Messages retrieved in this session and not stored: QUIT could let the server
        consume them (``EXPIRE 0``, Gmail), so while this is not empty we never QUIT."""
        return self.session.retrieved() - self.safe

    def run(self) -> PollReport:
        fingerprint = None if self.plan.delete else self.session.fingerprint()
        if fingerprint is not None and snapshot.unchanged(
            self.ledger, self.plan, fingerprint, self.report
        ):
            self._advance(0)
            self.log.info("mailbox.unchanged", listed=self.report.listed)
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
            size = None if fetch else total  # None: this poll wrote to the ledger, read it back
            snapshot.remember(
                self.ledger, self.plan, fingerprint, report, records=size, log=self.log
            )
        return report

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
        if not self.plan.too_large(entry):
            return False
        limit = self.plan.max_message_size
        if self.plan.oversize == "store_raw":
            self.log.warning("message.oversize_raw", uidl=entry.uidl, size=entry.size, limit=limit)
            return False
        self.report.oversize += 1
        self.log.warning("message.oversize_left", uidl=entry.uidl, size=entry.size, limit=limit)
        return True

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
        """RETR (pipelined) while ``store_concurrency`` store threads store the messages.

        The poll reads ahead of them, up to ``_READ_AHEAD`` messages per thread and
        ``_READ_AHEAD_BYTES`` (so a thread that finishes finds the next message waiting,
        not a poll thread blocked on the oldest one); when that is reached, those whose
        objects are in are marked ``stored`` (one ledger write) and DELEd here, in order.
        A store that raised (any of them, not only the oldest) ends the RETRs at once; its
        error is raised when the messages before it have been taken."""
        limit = max(1, self.plan.store_concurrency)
        self.to_fetch = len(fetch)
        self._advance(0)
        pending: _Pending = deque()
        failed = threading.Event()
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="store") as pool:
            try:
                for entry, result in self.session.retrieve_many(fetch):
                    failpoint("after_retr")
                    known = records.get(entry.uidl)
                    self.report.fetched += not isinstance(result, PermanentError)
                    future = pool.submit(self._store_unless_failed, failed, entry, result, known)
                    pending.append((entry, known, future))
                    if failed.is_set():
                        break  # a store raised: no more RETR; the loop below raises it
                    if _full(pending, limit * _READ_AHEAD):
                        self._finish_ready(pending, marked)
                while pending:
                    self._finish_ready(pending, marked)
            except BaseException:
                self._salvage(pending)
                raise

    def _store_unless_failed(
        self,
        failed: threading.Event,
        entry: MailboxEntry,
        result: Spool | PermanentError,
        known: LedgerRecord | None,
    ) -> Outcome:
        """In a store thread: store one message, unless the store of another one raised
        (a store that is down): the poll is ending, and the messages read ahead of that one
        are left for the next poll instead of each waiting out its own retries."""
        if failed.is_set():
            if isinstance(result, Spool):
                result.close()
            raise _Skipped(entry.uidl)
        try:
            return self.storer.work(entry, result, known)
        except BaseException:
            failed.set()
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

    def _count(self, done: Outcome, known: LedgerRecord | None) -> None:
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
    storer = Storer(plan, store, clock, parse, log, hooks)
    state = _Poll(plan, session, ledger, storer, guard, clock, report, log)
    state.progress = progress
    try:
        return state.run()
    except BaseException as err:
        state.report.outcome = "failed"
        state.report.error = str(err)
        state.end_after_failure()
        log.warning("poll.failed", error=str(err), kind=type(err).__name__)
        raise
