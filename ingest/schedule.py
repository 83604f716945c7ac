"""Which accounts are due: a Redis sorted set of next-due times, claimed atomically.

Each dispatcher tick costs two round trips whatever the number of accounts: a GET of
the config digest (the full account list is written only when the config changed)
and one Lua call that returns at most ``batch`` due accounts and pushes each one's next
due time forward by its interval. Because the claim is atomic, two beat processes
running at once (an HA pair, or an operator mistake) never hand out the same due slot
twice.

Spreading the load: an account entering the table is first due at ``now + phase *
interval``, its phase a fixed fraction in [0, 1) derived from a hash of its name, so
10,000 accounts added at once are spread evenly over one interval instead of all
connecting in the same second (and a restart or a config rewrite keeps every phase).
After a failed poll the account is pushed out by ``interval * 2**(failures - 1)``
(capped at ``BACKOFF_CAP`` seconds, or the interval if that is longer) plus up to 25%
random jitter; one successful poll resets the count. Both cost one round trip.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence

import redis

from ingest import keys
from ingest.config import AccountConfig
from ingest.errors import TransientError

BACKOFF_CAP = 3600.0
"""Seconds: the longest an account waits after repeated failures (unless its interval is longer)."""

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, name in ipairs(due) do
  local interval = tonumber(redis.call('HGET', KEYS[2], name) or '60')
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + interval, name)
end
return due
"""

# KEYS: schedule, intervals, failures. ARGV: name, now, cap, jitter fraction in [0, 1).
# An account no longer in the table (removed from the config) is not put back.
_FAILED = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return nil end
local failures = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
local interval = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '60')
local cap = math.max(tonumber(ARGV[3]), interval)
local delay = math.min(cap, interval * 2 ^ math.min(failures - 1, 30))
delay = math.min(cap, delay * (1 + 0.25 * tonumber(ARGV[4])))
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + delay, ARGV[1])
return tostring(delay)
"""


def schedule_digest(accounts: Sequence[AccountConfig]) -> str:
    """A fingerprint of the names and intervals: the table is rewritten when it changes."""
    text = ";".join(f"{a.name}={a.interval}" for a in sorted(accounts, key=lambda a: a.name))
    return hashlib.sha256(text.encode()).hexdigest()


def phase(name: str) -> float:
    """The account's fixed place in its interval, a fraction in [0, 1) from its name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


class Schedule:
    """The due-time table shared by every beat and worker through Redis."""

    def __init__(self, client: redis.Redis, batch: int = 1000) -> None:
        self.client = client
        self.batch = batch
        self._claim = client.register_script(_CLAIM)
        self._failed = client.register_script(_FAILED)

    def sync(
        self,
        accounts: Sequence[AccountConfig],
        now: float | None = None,
        *,
        digest: str | None = None,
    ) -> bool:
        """Make the table match the config; a no-op (one GET) when nothing changed.

        ``digest`` (:func:`schedule_digest` of ``accounts``) may be passed in by a caller
        that computed it once, so that a tick does not walk the whole account list.
        """
        digest = digest or schedule_digest(accounts)
        try:
            if self.client.get(keys.SCHEDULE_DIGEST_KEY) == digest.encode():
                return False
            self._rewrite(accounts, time.time() if now is None else now, digest)
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable updating the schedule: {err}") from err
        return True

    def _rewrite(self, accounts: Sequence[AccountConfig], now: float, digest: str) -> None:
        names = {a.name for a in accounts}
        stale = [_text(n) for n in self.client.zrange(keys.SCHEDULE_KEY, 0, -1)]
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.INTERVALS_KEY)
        if accounts:
            pipe.hset(keys.INTERVALS_KEY, mapping={a.name: a.interval for a in accounts})
            first = {a.name: now + phase(a.name) * a.interval for a in accounts}
            pipe.zadd(keys.SCHEDULE_KEY, first, nx=True)  # known accounts keep their time
        gone = [n for n in stale if n not in names]
        if gone:
            pipe.zrem(keys.SCHEDULE_KEY, *gone)
            pipe.hdel(keys.FAILURES_KEY, *gone)
        pipe.set(keys.SCHEDULE_DIGEST_KEY, digest)
        pipe.execute()

    def claim_due(self, now: float | None = None) -> list[str]:
        """Names of the accounts due now; each is pushed one interval into the future."""
        try:
            due = self._claim(
                keys=[keys.SCHEDULE_KEY, keys.INTERVALS_KEY],
                args=[time.time() if now is None else now, self.batch],
            )
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable claiming due accounts: {err}") from err
        return [_text(n) for n in due]

    def failed(
        self, name: str, now: float | None = None, jitter: float | None = None
    ) -> float | None:
        """Back off after a failed poll: seconds until ``name`` is next due (None: unscheduled).

        ``jitter`` in [0, 1) picks the point in the 25% jitter band (random if None).
        """
        fraction = random.random() if jitter is None else jitter  # noqa: S311 - not crypto
        try:
            delay = self._failed(
                keys=[keys.SCHEDULE_KEY, keys.INTERVALS_KEY, keys.FAILURES_KEY],
                args=[name, time.time() if now is None else now, BACKOFF_CAP, fraction],
            )
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable backing off {name}: {err}") from err
        return None if delay is None else float(_text(delay))

    def succeeded(self, name: str) -> None:
        """A poll of ``name`` completed: later failures back off from the start again."""
        try:
            self.client.hdel(keys.FAILURES_KEY, name)
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable resetting {name}'s backoff: {err}") from err

    def failures(self, name: str) -> int:
        """Consecutive failed polls of ``name`` since its last success."""
        try:
            value = self.client.hget(keys.FAILURES_KEY, name)
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable reading {name}'s failures: {err}") from err
        return int(value or 0)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
