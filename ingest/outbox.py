"""The events outbox in Redis: pending events per sink, claimed, acked, retried, dead-lettered.

Each sink of an account has its own pending events (a hash id -> CloudEvent JSON), a
sorted set of when each is due, a hash of failed attempts and a dead-letter set (keys in
``ingest/keys.py``). Every state change is one Lua call, so several workers can deliver at
once: a claim pushes the claimed events' due time past a lease, and a worker that dies
mid-send leaves them to be sent again when the lease ends (at least once).

Recording is idempotent by event id (HSETNX): a poll that runs the hook again for the same
message after a crash adds nothing while the first copy is still pending. The counters
kept beside (``ingest:{account}:events``: ``SINK:pending``, ``:dead``, ``:delivered``,
``:failures``, ``:error``, ...) change in the same Lua calls, so they stay exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis

from ingest import keys
from ingest.errors import TransientError
from ingest.events import Event

T = TypeVar("T")
Arg = str | int | float
Policy = tuple[int, float, float]
"""A sink's retry policy: (max_attempts, first retry delay, largest delay), seconds."""

_RECORD = """
local added = 0
for i = 2, #KEYS, 2 do
  if redis.call('HSETNX', KEYS[i], ARGV[1], ARGV[2]) == 1 then
    redis.call('ZADD', KEYS[i + 1], ARGV[3], ARGV[1])
    redis.call('HINCRBY', KEYS[1], ARGV[3 + i / 2] .. ':pending', 1)
    added = added + 1
  end
end
return added
"""

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[1], id)
  if body then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    table.insert(out, id)
    table.insert(out, body)
  else
    redis.call('ZREM', KEYS[2], id)
    redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':pending', -1)
  end
end
return out
"""

_ACK = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[2] .. ':pending', -1)
redis.call('HINCRBY', KEYS[4], ARGV[2] .. ':delivered', 1)
redis.call('HSET', KEYS[4], ARGV[2] .. ':delivered_at', ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[2] .. ':error', ARGV[2] .. ':error_at')
return 1
"""

# ARGV: id, sink, now, max_attempts, error, delay, delay_max, jitter (0..1)
_FAIL = """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {'0', '-1'} end
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HINCRBY', KEYS[5], ARGV[2] .. ':failures', 1)
redis.call('HSET', KEYS[5], ARGV[2] .. ':error', ARGV[5], ARGV[2] .. ':error_at', ARGV[3])
if n >= tonumber(ARGV[4]) then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
  redis.call('HINCRBY', KEYS[5], ARGV[2] .. ':pending', -1)
  redis.call('HINCRBY', KEYS[5], ARGV[2] .. ':dead', 1)
  return {tostring(n), '-1'}
end
local delay = math.min(tonumber(ARGV[7]), tonumber(ARGV[6]) * 2 ^ (n - 1))
local due = tonumber(ARGV[3]) + delay * (0.5 + 0.5 * tonumber(ARGV[8]))
redis.call('ZADD', KEYS[2], 'XX', due, ARGV[1])
return {tostring(n), tostring(due)}
"""

# ARGV: sink, now, ids... (none: every dead event)
_REQUEUE = """
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', KEYS[3], 0, -1) end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[3], id) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HDEL', KEYS[2], id)
    n = n + 1
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[4], ARGV[1] .. ':dead', -n)
  redis.call('HINCRBY', KEYS[4], ARGV[1] .. ':pending', n)
end
return n
"""


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed delivery came to: attempts so far, and the next due time (None: dead)."""

    attempts: int
    retry_at: float | None


@dataclass(frozen=True, slots=True)
class Entry:
    """A pending or dead-lettered event, as ``ingest events list`` shows it."""

    account: str
    sink: str
    id: str
    when: float  # due time (pending) or time of dead-lettering (dead)
    attempts: int
    body: str


def _redis(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except redis.RedisError as err:
        raise TransientError(f"redis unavailable {what}: {err}") from err


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Outbox:
    """The pending events of one account, for the sinks named ``sinks``."""

    def __init__(self, client: redis.Redis, account: str, sinks: Sequence[str]) -> None:
        self.client = client
        self.account = account
        self.sinks = tuple(sinks)
        self.stats = keys.event_stats_key(account)
        self._record = client.register_script(_RECORD)
        self._claim = client.register_script(_CLAIM)
        self._ack = client.register_script(_ACK)
        self._fail = client.register_script(_FAIL)
        self._requeue = client.register_script(_REQUEUE)

    def record(self, event: Event, now: float) -> int:
        """Add ``event`` for every sink that does not hold it yet; returns how many did not."""
        ks = [self.stats]
        for sink in self.sinks:
            events, due, _, _ = keys.outbox_keys(self.account, sink)
            ks += [events, due]
        args: list[Arg] = [event.id, event.body, now, *self.sinks]
        return int(_redis("recording an event", lambda: self._record(keys=ks, args=args)))

    def claim(self, sink: str, now: float, lease: float, batch: int) -> list[Event]:
        """Due events of ``sink``, hidden from other claims for ``lease`` seconds."""
        events, due, _, _ = keys.outbox_keys(self.account, sink)
        flat = _redis(
            "claiming events",
            lambda: self._claim(
                keys=[events, due, self.stats], args=[now, now + lease, batch, sink]
            ),
        )
        return [
            Event(_text(flat[i]), self.account, _text(flat[i + 1])) for i in range(0, len(flat), 2)
        ]

    def ack(self, sink: str, event_id: str, now: float) -> bool:
        """Delivered: forget it. False when another worker had already acked it."""
        events, due, attempts, _ = keys.outbox_keys(self.account, sink)
        ks = [events, due, attempts, self.stats]
        return bool(
            _redis("acking an event", lambda: self._ack(keys=ks, args=[event_id, sink, now]))
        )

    def fail(
        self, sink: str, event_id: str, now: float, error: str, *, policy: Policy, jitter: float
    ) -> Failure:
        """Count a failed attempt; retry later with backoff, or dead-letter at max_attempts."""
        max_attempts, delay, delay_max = policy
        ks = list(keys.outbox_keys(self.account, sink))
        ks.append(self.stats)
        args: list[Arg] = [event_id, sink, now, max_attempts, error[:300], delay, delay_max, jitter]
        n, due = _redis("failing an event", lambda: self._fail(keys=ks, args=args))
        retry_at = float(due)
        return Failure(int(n), None if retry_at < 0 else retry_at)

    def defer(self, sink: str, event_ids: Iterable[str], until: float) -> None:
        """Put claimed events back, due at ``until``, without counting an attempt."""
        ids = list(event_ids)
        if ids:
            due = keys.outbox_keys(self.account, sink)[1]
            _redis(
                "deferring events",
                lambda: self.client.zadd(due, dict.fromkeys(ids, until), xx=True),
            )

    def note_error(self, sink: str, error: str, now: float) -> None:
        """A sink that could not even be opened (a missing secret): shown by ``status``."""
        _redis(
            "noting an error",
            lambda: self.client.hset(
                self.stats, mapping={f"{sink}:error": error[:300], f"{sink}:error_at": now}
            ),
        )

    def requeue(self, sink: str, event_ids: Sequence[str], now: float) -> int:
        """Move dead-lettered events (all when ``event_ids`` is empty) back to pending."""
        _, due, attempts, dead = keys.outbox_keys(self.account, sink)
        ks = [due, attempts, dead, self.stats]
        args: list[Arg] = [sink, now, *event_ids]
        return int(_redis("requeueing events", lambda: self._requeue(keys=ks, args=args)))

    def entries(self, sink: str, *, dead: bool, limit: int = 1000) -> list[Entry]:
        """Pending (by due time) or dead-lettered events of ``sink``."""
        events, due, attempts, dead_key = keys.outbox_keys(self.account, sink)
        ranked = cast(
            "list[tuple[bytes, float]]",
            _redis(
                "listing events",
                lambda: self.client.zrange(
                    dead_key if dead else due, 0, limit - 1, withscores=True
                ),
            ),
        )
        if not ranked:
            return []
        ids = [_text(i) for i, _ in ranked]
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(attempts, ids)
        pipe.hmget(events, ids)
        counts, bodies = _redis("listing events", pipe.execute)
        return [
            Entry(self.account, sink, ids[n], score, int(counts[n] or 0), _text(bodies[n] or b""))
            for n, (_, score) in enumerate(ranked)
        ]


def sink_stats(client: redis.Redis, names: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per account, per sink: pending, dead, delivered, failures, error, error_at, delivered_at."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.event_stats_key(name))
    replies = _redis("reading event counters", pipe.execute)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, raw in zip(names, replies, strict=True):
        sinks: dict[str, dict[str, Any]] = {}
        for field, value in raw.items():
            sink, _, what = _text(field).rpartition(":")
            text = _text(value)
            sinks.setdefault(sink, {})[what] = text if what == "error" else json.loads(text)
        out[name] = sinks
    return out


def totals(sinks: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """Pending and dead-lettered events over all sinks of one account's ``sink_stats``."""
    pending = sum(int(s.get("pending", 0)) for s in sinks.values())
    return pending, sum(int(s.get("dead", 0)) for s in sinks.values())


def leftover_sinks(
    client: redis.Redis, account: str, configured: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Sinks of ``account`` that still have outbox keys or counters in Redis although
    ``configured`` no longer names them: sink -> (pending, dead-lettered events)."""
    prefix = keys.outbox_prefix(account)
    found = set(sink_stats(client, [account])[account])
    for key in _redis("listing outbox keys", lambda: list(client.scan_iter(prefix + "*", 1000))):
        found.add(_text(key)[len(prefix) :].rpartition(":")[0])  # SINK:events -> SINK
    left = sorted(found - set(configured))
    pipe = client.pipeline(transaction=False)
    for sink in left:
        _, due, _, dead = keys.outbox_keys(account, sink)
        pipe.zcard(due)
        pipe.zcard(dead)
    counts = _redis("counting leftover events", pipe.execute) if left else []
    return {sink: (counts[2 * n], counts[2 * n + 1]) for n, sink in enumerate(left)}


def drop_sink(client: redis.Redis, account: str, sink: str) -> None:
    """Delete every outbox key and counter of one sink of ``account`` (one transaction)."""
    stats = keys.event_stats_key(account)
    fields = _redis("reading counters", lambda: client.hkeys(stats))
    mine = [f for f in map(_text, fields) if f.rpartition(":")[0] == sink]
    pipe = client.pipeline(transaction=True)
    pipe.delete(*keys.outbox_keys(account, sink))
    if mine:
        pipe.hdel(stats, *mine)
    _redis("deleting a sink's outbox", pipe.execute)
