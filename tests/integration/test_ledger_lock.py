"""The Redis ledger and lock against a real redis-server (and the fake, by contract)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from fakes import MemoryLedger

from ingest import keys
from ingest.errors import LockLost
from ingest.interfaces import Ledger
from ingest.ledger import RedisLedger
from ingest.lock import AccountLock
from ingest.model import LedgerRecord, State

REC = LedgerRecord(State.STORED, "a" * 64, 10, "raw/k", "json/k", 1.0)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


@pytest.fixture(params=["memory", "redis"])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    if request.param == "memory":
        return MemoryLedger()
    client: redis.Redis = request.getfixturevalue("client")
    lock = AccountLock(client, "acct", ttl=30)
    assert lock.acquire()
    request.addfinalizer(lock.release)
    return RedisLedger(client, "acct", lock.token, 30)


def test_lookup_returns_known_records_and_the_total(ledger: Ledger) -> None:
    """Lookup answers only the asked UIDLs that are known, plus the ledger's size."""
    ledger.put({"u1": REC, "u2": REC})
    found, total = ledger.lookup(["u1", "u3"])
    assert found == {"u1": REC} and total == 2
    assert ledger.lookup([]) == ({}, 2)


def test_records_round_trip_and_can_be_removed(ledger: Ledger) -> None:
    """What is put comes back equal; removed UIDLs are gone."""
    deleted = LedgerRecord(State.DELETED, "b" * 64, 5, "r", "j", 2.0, gone_since=3.0)
    ledger.put({"u1": REC, "u2": deleted})
    assert ledger.all_records() == {"u1": REC, "u2": deleted}
    ledger.remove(["u1"])
    assert ledger.all_records() == {"u2": deleted}


def test_the_unchanged_note_lasts_until_the_next_write(ledger: Ledger) -> None:
    """The note a settled poll leaves is read back with the ledger's size; any write or
    removal of records drops it."""
    ledger.put({"u1": REC})
    assert ledger.snapshot() == (None, 1)
    ledger.remember('{"fingerprint": "f"}')
    assert ledger.snapshot() == ('{"fingerprint": "f"}', 1)
    ledger.put({"u2": REC})
    assert ledger.snapshot() == (None, 2)
    ledger.remember("again")
    ledger.remove(["u1"])
    assert ledger.snapshot() == (None, 1)


def test_the_note_is_fenced_and_expires(client: redis.Redis) -> None:
    lock = AccountLock(client, "acct", ttl=30)
    assert lock.acquire()
    ledger = RedisLedger(client, "acct", lock.token, 30)
    ledger.remember("note")
    assert 0 < client.ttl(keys.snapshot_key("acct")) <= 86400
    client.delete(keys.lock_key("acct"))
    assert AccountLock(client, "acct", ttl=30).acquire()
    with pytest.raises(LockLost):
        ledger.remember("stale")
    assert client.get(keys.snapshot_key("acct")) == b"note"


def test_ledger_write_is_refused_once_the_lock_is_gone(client: redis.Redis) -> None:
    """Fencing: a ledger whose lock token is no longer current cannot write."""
    lock = AccountLock(client, "acct", ttl=30)
    assert lock.acquire()
    ledger = RedisLedger(client, "acct", lock.token, 30)
    client.delete(keys.lock_key("acct"))  # expired
    other = AccountLock(client, "acct", ttl=30)
    assert other.acquire()
    with pytest.raises(LockLost):
        ledger.put({"u1": REC})
    assert client.hlen(keys.ledger_key("acct")) == 0
    with pytest.raises(LockLost):
        lock.check()
    other.release()


def test_lock_is_exclusive_and_fencing_tokens_grow(client: redis.Redis) -> None:
    """A second acquire fails while the first holds; the next holder has a larger fence."""
    first = AccountLock(client, "acct", ttl=30)
    second = AccountLock(client, "acct", ttl=30)
    assert first.acquire() and not second.acquire()
    first.release()
    assert second.acquire()
    assert int(second.token.split("-")[0]) > int(first.token.split("-")[0])
    second.release()
    assert client.get(keys.lock_key("acct")) is None


def test_lock_is_renewed_while_held(client: redis.Redis) -> None:
    """The heartbeat keeps a short lock alive past its TTL while the poll runs."""
    lock = AccountLock(client, "acct", ttl=5)
    assert lock.acquire()
    time.sleep(6)
    lock.check()
    assert client.get(keys.lock_key("acct")).decode() == lock.token
    lock.release()
