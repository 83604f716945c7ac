"""Which accounts are due: a Redis sorted set of next-due times, claimed atomically.

Each dispatcher tick costs two round trips whatever the number of accounts: a GET of
the config digest (the full account list is written only when the config changed)
and one Lua call that returns the due accounts and pushes each one's next due time
forward by its interval. Because the claim is atomic, two beat processes running at
once (an HA pair, or an operator mistake) never hand out the same due slot twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import redis

from ingest import keys
from ingest.config import AccountConfig
from ingest.errors import TransientError

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, name in ipairs(due) do
  local interval = tonumber(redis.call('HGET', KEYS[2], name) or '60')
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + interval, name)
end
return due
"""


def _digest(accounts: Sequence[AccountConfig]) -> str:
    text = ";".join(f"{a.name}={a.interval}" for a in sorted(accounts, key=lambda a: a.name))
    return hashlib.sha256(text.encode()).hexdigest()


class Schedule:
    """The due-time table shared by every beat and worker through Redis."""

    def __init__(self, client: redis.Redis, batch: int = 1000) -> None:
        self.client = client
        self.batch = batch
        self._claim = client.register_script(_CLAIM)

    def sync(self, accounts: Sequence[AccountConfig], now: float | None = None) -> bool:
        """Make the table match the config; a no-op (one GET) when nothing changed."""
        digest = _digest(accounts)
        try:
            if self.client.get(keys.SCHEDULE_DIGEST_KEY) == digest.encode():
                return False
            self._rewrite(accounts, now or time.time(), digest)
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
            pipe.zadd(keys.SCHEDULE_KEY, {a.name: now for a in accounts}, nx=True)
        gone = [n for n in stale if n not in names]
        if gone:
            pipe.zrem(keys.SCHEDULE_KEY, *gone)
        pipe.set(keys.SCHEDULE_DIGEST_KEY, digest)
        pipe.execute()

    def claim_due(self, now: float | None = None) -> list[str]:
        """Names of the accounts due now; each is pushed one interval into the future."""
        try:
            due = self._claim(
                keys=[keys.SCHEDULE_KEY, keys.INTERVALS_KEY],
                args=[now or time.time(), self.batch],
            )
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable claiming due accounts: {err}") from err
        return [_text(n) for n in due]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
