"""In-memory fakes of the pipeline's interfaces, with POP3 and store semantics kept honest.

The contract tests run the same assertions against these and against the real adapters,
so the fakes cannot drift from reality.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ingest.errors import LockLost, PermanentError, ProtocolError, StorageError, TransientError
from ingest.interfaces import Put
from ingest.model import LedgerRecord, MailboxEntry, header_block
from ingest.spool import Spool


@dataclass
class FakeMaildrop:
    """The server side: messages by UIDL, surviving sessions; deletions applied at QUIT."""

    messages: dict[str, bytes] = field(default_factory=dict)
    quits: int = 0
    refuse_retr: set[str] = field(default_factory=set)  # UIDLs whose RETR answers -ERR

    def add(self, uidl: str, raw: bytes) -> None:
        self.messages[uidl] = raw

    def session(self, **faults: int) -> FakeSession:
        return FakeSession(self, **faults)


class FakeSession:
    """One POP3 session over a FakeMaildrop. ``fail_retr_at=n`` breaks the n-th RETR."""

    def __init__(
        self, drop: FakeMaildrop, fail_retr_at: int = 0, fail_quit: int = 0, refuse_dele: int = 0
    ) -> None:
        self.drop = drop
        self.entries = [
            MailboxEntry(i + 1, uidl, len(raw))
            for i, (uidl, raw) in enumerate(drop.messages.items())
        ]
        self.marked: set[int] = set()
        self.retrieved_uidls: list[str] = []
        self.topped: list[str] = []
        self.closed = ""
        self.fail_retr_at = fail_retr_at
        self.fail_quit = fail_quit
        self.refuse_dele = refuse_dele  # this message number answers DELE with -ERR
        self.refused: set[int] = set()
        self.listings = 0

    def _open(self) -> None:
        if self.closed:
            raise TransientError("connection closed")

    def listing(self) -> list[MailboxEntry]:
        self._open()
        self.listings += 1
        return list(self.entries)

    def fingerprint(self) -> str | None:
        self._open()
        listed = "".join(f"{e.number} {e.uidl} {e.size}\n" for e in self.entries)
        return hashlib.sha256(listed.encode()).hexdigest()

    def retrieve(self, entry: MailboxEntry) -> Spool:
        self._open()
        self.retrieved_uidls.append(entry.uidl)
        if self.fail_retr_at and len(self.retrieved_uidls) == self.fail_retr_at:
            self.closed = "dropped"
            raise TransientError("connection reset during RETR")
        return Spool.of(self.drop.messages[entry.uidl])

    def retrieve_many(
        self, entries: Iterable[MailboxEntry]
    ) -> Iterator[tuple[MailboxEntry, Spool | PermanentError]]:
        for entry in entries:
            if entry.uidl in self.drop.refuse_retr:
                self.retrieved_uidls.append(entry.uidl)
                yield entry, ProtocolError("RETR: server said -ERR cannot read message")
            else:
                yield entry, self.retrieve(entry)

    def refused_deletes(self) -> set[int]:
        return set(self.refused)

    def retrieved(self) -> set[int]:
        numbers = {e.uidl: e.number for e in self.entries}
        return {numbers[u] for u in self.retrieved_uidls}

    def headers(self, entry: MailboxEntry) -> bytes | None:
        self._open()
        self.topped.append(entry.uidl)
        return header_block(self.drop.messages[entry.uidl])

    def delete(self, entry: MailboxEntry) -> None:
        self._open()
        if entry.number == self.refuse_dele:
            self.refused.add(entry.number)
            return
        self.marked.add(entry.number)

    def commit(self) -> None:
        self._open()
        if self.fail_quit:
            self.closed = "dropped"
            raise TransientError("connection reset during QUIT")
        for entry in self.entries:
            if entry.number in self.marked and entry.number not in self.refused:
                del self.drop.messages[entry.uidl]
        self.drop.quits += 1
        self.closed = "quit"

    def reset_and_quit(self) -> None:
        self._open()
        self.marked.clear()
        self.drop.quits += 1
        self.closed = "rset+quit"

    def abandon(self) -> None:
        self.closed = self.closed or "abandoned"


class MemoryLedger:
    """The ledger as a dict; ``lost`` simulates a fenced write after the lock expired."""

    def __init__(self) -> None:
        self.records: dict[str, LedgerRecord] = {}
        self.lost = False
        self.round_trips = 0
        self.note: str | None = None  # dropped by every write, like RedisLedger's snapshot

    def lookup(self, uidls: Sequence[str]) -> tuple[dict[str, LedgerRecord], int]:
        self.round_trips += 1
        return {u: self.records[u] for u in uidls if u in self.records}, len(self.records)

    def all_records(self) -> dict[str, LedgerRecord]:
        self.round_trips += 1
        return dict(self.records)

    def snapshot(self) -> tuple[str | None, int]:
        self.round_trips += 1
        return self.note, len(self.records)

    def remember(self, note: str) -> None:
        self._fence()
        self.note = note

    def put(self, records: Mapping[str, LedgerRecord]) -> None:
        if records:
            self._fence()
            self.records.update(records)
            self.note = None

    def remove(self, uidls: Iterable[str]) -> None:
        uidls = list(uidls)
        if uidls:
            self._fence()
            for uidl in uidls:
                self.records.pop(uidl, None)
            self.note = None

    def _fence(self) -> None:
        self.round_trips += 1
        if self.lost:
            raise LockLost("lock lost")


class MemoryStore:
    """Create-only object store in a dict, verifying like the real ones."""

    def __init__(self, fail_puts: int = 0) -> None:
        self.objects: dict[str, bytes] = {}
        self.put_calls = 0
        self.fail_puts = fail_puts
        self.refuse: set[bytes] = set()  # contents refused for good (a poison message)

    def put(self, key: str, body: Spool, content_type: str, *, must_match: bool = True) -> Put:
        self.put_calls += 1
        if self.fail_puts:
            self.fail_puts -= 1
            raise TransientError("503 SlowDown")
        data = body.read()
        if hashlib.sha256(data).hexdigest() != body.sha256 or data in self.refuse:
            raise StorageError(f"{key}: checksum mismatch")
        if key in self.objects:
            if must_match and hashlib.sha256(self.objects[key]).hexdigest() != body.sha256:
                raise StorageError(f"{key} exists with different content")
            return Put.EXISTED
        self.objects[key] = data
        return Put.CREATED

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise StorageError(f"no object {key}")
        return self.objects[key]

    def reader(self, key: str) -> io.BytesIO:
        return io.BytesIO(self.get(key))

    def replace(self, key: str, body: Spool, content_type: str) -> None:
        self.objects[key] = body.read()

    def keys(self, prefix: str) -> Iterator[str]:
        yield from sorted(k for k in self.objects if k.startswith(prefix))

    def describe(self) -> str:
        return "memory"


class FakeGuard:
    def __init__(self) -> None:
        self.lost = False
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if self.lost:
            raise LockLost("lock lost")
