"""Frozen data that flows through a poll: listing entries, fetched messages, records, reports."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ingest.spool import Spool


@dataclass(frozen=True, slots=True)
class MailboxEntry:
    """One message as the server lists it: session-local number, UIDL and octet size.

    ``derived`` marks an identity computed from content (``sha-...``) because the server
    has no UIDL or listed this UIDL more than once.
    """

    number: int
    uidl: str
    size: int
    derived: bool = False


def header_block(raw: bytes) -> bytes:
    """The header section up to and including the empty line: what ``TOP n 0`` returns."""
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 4]


_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(?:\r\n[ \t]+)?(<[^>\r\n]{1,998}>)")


def message_id_of(head: bytes) -> str:
    """The Message-ID in a header block, as written (with its angle brackets), or ''."""
    match = _MESSAGE_ID.search(head)
    return match.group(1).decode("ascii", "replace") if match else ""


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """A retrieved message: ``raw`` holds exactly what RETR returned (CRLF, dot-unstuffed)."""

    account: str
    entry: MailboxEntry
    raw: Spool

    @property
    def sha256(self) -> str:
        return self.raw.sha256


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message whose raw object and JSON document are stored and verified, handed to the
    poll's hooks (events outbox, index) before the ledger marks it ``stored``.

    A hook runs again for the same message when a crash came between it and the mark, so
    whatever a hook writes must be idempotent (keyed by account + sha256, or account +
    UIDL + sha256). A hook that raises fails the message like a failed put would.
    """

    account: str
    uidl: str
    sha256: str
    size: int
    raw_key: str
    json_key: str
    document: dict[str, Any]


StoredHook = Callable[[StoredMessage], None]
"""Called in a store thread once a message's objects are in, before its ``stored`` mark."""


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

    def too_large(self, entry: MailboxEntry) -> bool:
        """Over ``max_message_size`` by its LIST size."""
        return self.max_message_size is not None and entry.size > self.max_message_size


class State(StrEnum):
    """Ledger state of one UIDL: ``stored`` (raw and JSON verified), then ``deleted`` (QUIT)."""

    STORED = "stored"
    DELETED = "deleted"
    FAILING = "failing"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """What the ledger knows about one UIDL of one account.

    ``head_sha256`` is the SHA-256 of the message's header block (up to and including the
    first empty line), compared with a ``TOP n 0`` reply before a message stored in an
    earlier session is deleted. ``body_sha256`` (everything after the header block) and
    ``message_id`` recognise a message whose headers the server rewrote (GNU Mailutils adds
    Status and X-UID fields after each session). ``failures`` and ``reason`` describe a
    message that could not be stored (states ``failing`` and ``quarantined``). ``storage``
    is what the store reported for the raw object (version, encryption, class, Object Lock
    mode and retain-until, legal hold); empty for stores without such options.
    """

    state: State
    sha256: str
    size: int
    raw_key: str
    json_key: str
    stored_at: float
    gone_since: float | None = None
    head_sha256: str = ""
    failures: int = 0
    reason: str = ""
    body_sha256: str = ""
    message_id: str = ""
    storage: dict[str, str] = field(default_factory=dict)  # how the raw object is protected


@dataclass(slots=True)
class PollReport:
    """What one poll did; mutable while the poll runs, read by CLI, tasks and logs."""

    account: str
    listed: int = 0
    fetched: int = 0
    stored: int = 0
    already_stored: int = 0
    deleted: int = 0
    parse_failures: int = 0
    bytes_stored: int = 0
    pruned: int = 0
    quarantined: int = 0
    oversize: int = 0
    rekeyed: int = 0
    outcome: str = "running"
    error: str | None = None

    def summary(self) -> str:
        return (
            f"{self.account}: {self.outcome}; listed {self.listed}, fetched {self.fetched}, "
            f"stored {self.stored} ({self.bytes_stored} bytes), already stored "
            f"{self.already_stored}, deleted {self.deleted}, parse failures "
            f"{self.parse_failures}, quarantined {self.quarantined}, oversize left "
            f"{self.oversize}, pruned {self.pruned}"
            + (f"; error: {self.error}" if self.error else "")
        )
