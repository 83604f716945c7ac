"""The pure decisions of a poll: usable UIDLs, what to prune, when to quarantine."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ingest.model import LedgerRecord, MailboxEntry, State

_VALID_UIDL = re.compile(r"^[\x21-\x7e]{1,70}$")  # RFC 1939: 1-70 characters 0x21-0x7E


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


def prune_plan(
    records: Mapping[str, LedgerRecord], present: set[str], now: float, grace: float
) -> tuple[dict[str, LedgerRecord], list[str]]:
    """For UIDLs gone from the server: records to stamp ``gone_since`` now, and UIDLs gone
    for longer than ``grace`` seconds, to forget."""
    gone = {u: r for u, r in records.items() if u not in present}
    expired = [
        u for u, r in gone.items() if r.gone_since is not None and now - r.gone_since >= grace
    ]
    fresh = {u: replace(r, gone_since=now) for u, r in gone.items() if r.gone_since is None}
    return fresh, expired


def failure_record(
    entry: MailboxEntry, previous: LedgerRecord | None, reason: str, now: float, limit: int
) -> LedgerRecord:
    """One more failure in a row for ``entry``: ``failing``, or ``quarantined`` at ``limit``."""
    before = previous.failures if previous and previous.state is State.FAILING else 0
    failures = before + 1
    state = State.QUARANTINED if failures >= limit else State.FAILING
    return LedgerRecord(state, "", entry.size, "", "", now, failures=failures, reason=reason)
