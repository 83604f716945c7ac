"""Count the commands clients send to Redis while something runs (MONITOR, in a thread).

Commands that Lua scripts run inside Redis are not counted (they cost no round trip); a
pipeline's commands are counted one by one, so the total is an upper bound on round trips.
"""

from __future__ import annotations

import threading
from collections import Counter
from types import TracebackType

import redis

_END = "bench-counter-end"


class CommandCounter:
    """``with CommandCounter(url) as c: ...`` then ``c.counts`` (command name -> calls)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: Counter[str] = Counter()
        self._client = redis.Redis.from_url(url)
        self._marker = redis.Redis.from_url(url)
        self._marker.ping()  # connected before counting starts: its handshake is not counted
        self._monitor = self._client.monitor()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CommandCounter:
        self._monitor.__enter__()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while True:
                event = self._monitor.next_command()
                if _END in str(event["command"]):
                    return
                if event.get("client_type") != "lua":
                    self.counts[str(event["command"]).split(" ", 1)[0].upper()] += 1
        except (redis.RedisError, OSError, ValueError, AttributeError):
            return

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # a marker: once MONITOR has shown it, everything sent before it has been counted
        self._marker.echo(_END)
        self._marker.close()
        self._thread.join(timeout=30)
        self._monitor.connection.disconnect()
        self._client.close()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        return ", ".join(f"{name} {n}" for name, n in self.counts.most_common())
