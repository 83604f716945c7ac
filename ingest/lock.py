"""One poll per account at a time: a Redis lock with expiry, renewal and a fencing token.

The lock value is ``{fence}-{random}``, where ``fence`` comes from a per-account counter
that only grows. Every ledger write checks the value inside Redis (a Lua script) in the
same step, so a worker whose lock expired can no longer mark anything; the pipeline also
checks before DELE and before QUIT. A heartbeat thread renews the expiry while the poll
runs and records when the lock was lost.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from types import TracebackType

import redis

from ingest import keys
from ingest.errors import LockLost, TransientError

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class AccountLock:
    """Non-blocking per-account lock; ``acquire`` returns False when another poll holds it."""

    def __init__(self, client: redis.Redis, account: str, ttl: float = 60.0) -> None:
        self.client = client
        self.account = account
        self.key = keys.lock_key(account)
        self.ttl_ms = int(ttl * 1000)
        self.token = ""
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        try:
            fence = int(self.client.incr(keys.fence_key(self.account)))
            token = f"{fence}-{secrets.token_hex(8)}"
            if not self.client.set(self.key, token, nx=True, px=self.ttl_ms):
                return False
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable while locking: {err}") from err
        self.token = token
        self._thread = threading.Thread(target=self._heartbeat, daemon=True, name="lock-renew")
        self._thread.start()
        return True

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
                    self._lost.set()
                    return
            except redis.RedisError:
                continue  # expiry still protects us; the fenced writes will tell

    def check(self) -> None:
        """Raise :class:`LockLost` unless we still hold the lock (one round trip)."""
        if self._lost.is_set():
            raise LockLost(f"lock for {self.account} was lost")
        try:
            ok = self._renew(keys=[self.key], args=[self.token, self.ttl_ms])
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable while checking the lock: {err}") from err
        if not ok:
            self._lost.set()
            raise LockLost(f"lock for {self.account} expired or was taken over")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):  # it expires by itself
            self._release(keys=[self.key], args=[self.token])

    def __enter__(self) -> AccountLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.token:
            self.release()
