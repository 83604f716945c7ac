"""The small interfaces the poll pipeline is written against (real adapters and fakes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ingest.errors import PermanentError
from ingest.model import LedgerRecord, MailboxEntry
from ingest.spool import Spool

if TYPE_CHECKING:
    from ingest.object_params import ObjectWriter


class Put(StrEnum):
    """Outcome of a create-only write: we created the object, or it was already there."""

    CREATED = "created"
    EXISTED = "existed"


class MailboxSession(Protocol):
    """An authenticated POP3 session (TRANSACTION state)."""

    def listing(self) -> list[MailboxEntry]: ...

    def fingerprint(self) -> str | None:
        """A digest of the mailbox's messages, UIDLs and sizes (None: cannot tell); call it
        before :meth:`listing`."""

    def retrieve(self, entry: MailboxEntry) -> Spool: ...

    def retrieve_many(
        self, entries: Iterable[MailboxEntry]
    ) -> Iterator[tuple[MailboxEntry, Spool | PermanentError]]:
        """RETR each entry (pipelined where possible); a message's permanent -ERR is yielded."""

    def refused_deletes(self) -> set[int]:
        """Numbers whose DELE the server refused for good (they stay on the server)."""

    def retrieved(self) -> set[int]:
        """Numbers of the messages retrieved (RETR) in this session so far."""

    def headers(self, entry: MailboxEntry) -> bytes | None:
        """The header block (``TOP n 0``), or None when the server cannot say."""

    def delete(self, entry: MailboxEntry) -> None: ...

    def commit(self) -> None:
        """QUIT: the server removes what was marked with DELE."""

    def reset_and_quit(self) -> None:
        """RSET + QUIT: nothing is removed; only when nothing retrieved is at risk."""

    def abandon(self) -> None:
        """Drop the connection without QUIT: the server commits nothing."""


class Ledger(Protocol):
    """Per-account UIDL ledger; writes are fenced by the poll's lock."""

    def lookup(self, uidls: Sequence[str]) -> tuple[dict[str, LedgerRecord], int]: ...

    def all_records(self) -> dict[str, LedgerRecord]: ...

    def snapshot(self) -> tuple[str | None, int]:
        """The note left by :meth:`remember` unless the ledger was written since, and the
        number of records."""

    def remember(self, note: str) -> None:
        """Keep ``note`` until the next write of the ledger (fenced like the writes)."""

    def put(self, records: Mapping[str, LedgerRecord]) -> None: ...

    def remove(self, uidls: Iterable[str]) -> None: ...


class Readable(Protocol):
    """An object being read as a stream (a file, a boto3 streaming body); close it after."""

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    """Create-only, verified writes of whole objects under content-derived keys."""

    def put(self, key: str, body: Spool, content_type: str, *, must_match: bool = True) -> Put:
        """Store ``body`` at ``key`` unless it exists; return once stored and verified.

        When the key exists and ``must_match`` is true, the stored object must have
        ``body.sha256`` (else :class:`~ingest.errors.StorageError`); when false (derived
        documents such as the JSON), an existing object is kept as it is.
        """

    def get(self, key: str) -> bytes: ...

    def reader(self, key: str) -> Readable:
        """The object as a stream, for objects too large to hold in memory."""

    def replace(self, key: str, body: Spool, content_type: str) -> None:
        """Overwrite a *derived* object (never a raw message), verified."""

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``."""

    def describe(self) -> str: ...


class Guard(Protocol):
    """The poll's lock: ``check`` raises :class:`~ingest.errors.LockLost` once it is gone."""

    def check(self) -> None: ...


@runtime_checkable
class Protecting(Protocol):
    """A store that can say how a raw object it wrote is protected (S3 write options)."""

    def protection(self, key: str) -> dict[str, str]: ...


@runtime_checkable
class AccountViews(Protocol):
    """A store that writes with one account's options through a view of itself (S3)."""

    def for_account(self, writer: ObjectWriter) -> BlobStore: ...
