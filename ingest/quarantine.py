"""Quarantined messages: list them, and release them so the next poll tries again.

A message is quarantined after ``quarantine_after`` polls in a row failed to store it
for a reason specific to it (the store refused it, RETR answered -ERR, ...). It stays
on the server, untouched, and the rest of the mailbox keeps flowing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from ingest.config import Settings
from ingest.errors import TransientError
from ingest.ledger import RedisLedger
from ingest.lock import AccountLock
from ingest.model import LedgerRecord, State


@dataclass(frozen=True, slots=True)
class Quarantined:
    account: str
    uidl: str
    record: LedgerRecord


def list_quarantined(client: redis.Redis, names: Iterable[str]) -> list[Quarantined]:
    out = []
    for name in names:
        ledger = RedisLedger(client, name, token="", ttl=1)  # read-only use: no token needed
        for uidl, rec in sorted(ledger.all_records().items()):
            if rec.state is State.QUARANTINED:
                out.append(Quarantined(name, uidl, rec))
    return out


def release(client: redis.Redis, settings: Settings, name: str, uidls: list[str] | None) -> int:
    """Forget the quarantine of ``uidls`` (all when None); returns how many were released.

    Takes the account's poll lock, so it never races a running poll.
    """
    lock = AccountLock(client, name, settings.lock_ttl)
    if not lock.acquire():
        raise TransientError(f"a poll of {name} is running; try again when it has finished")
    with lock:
        ledger = RedisLedger(client, name, lock.token, settings.lock_ttl)
        held = {u for u, r in ledger.all_records().items() if r.state is State.QUARANTINED}
        chosen = held if uidls is None else held & set(uidls)
        ledger.remove(sorted(chosen))
        return len(chosen)
