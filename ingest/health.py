"""Liveness and readiness checks (Redis, storage, the dispatcher's heartbeat), kept cheap.

- Liveness: the worker's event loop calls :func:`touch` every few seconds; the process is
  alive while the latest touch is recent.
- Readiness: Redis answers PING, the store is reachable (S3: one HEAD, without retries, of
  the probe object every worker start and ``ingest check`` write, so GetObject permission
  suffices; directory: it exists and is writable), and the dispatcher ticked within
  ``metrics.stale_ticks`` x ``dispatch_interval`` (beat runs ``ingest.dispatch``, which
  writes its time to ``ingest:{schedule}:tick``).

:class:`StateCollector` exposes the same checks, the dispatcher's last tick and each
account's last successful poll (from Redis, so it survives restarts) on every scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import redis
from botocore.exceptions import ClientError
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest import keys
from ingest.config import Settings
from ingest.errors import IngestError
from ingest.store_s3 import make_s3_client

LIVENESS_TICK = 5.0  # seconds between touches from the worker's event loop
LIVENESS_MAX_AGE = 60.0
_last_touch = time.monotonic()


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict: ``name`` is redis, storage, scheduler or loop; ``detail`` says why."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def touch() -> None:
    """Called from the worker's event loop: proof that it still runs."""
    global _last_touch  # noqa: PLW0603 - one process-wide heartbeat
    _last_touch = time.monotonic()


def liveness(max_age: float = LIVENESS_MAX_AGE) -> Check:
    age = time.monotonic() - _last_touch
    return Check("loop", age < max_age, f"event loop last seen {age:.1f} s ago")


def record_tick(client: redis.Redis, now: float | None = None) -> None:
    """The dispatcher's heartbeat (one SET per tick)."""
    client.set(keys.DISPATCH_TICK_KEY, repr(now if now is not None else time.time()))


def _float(value: object) -> float | None:
    try:
        return float(value.decode() if isinstance(value, bytes) else str(value))
    except ValueError:
        return None


class Probe:
    """Readiness checks for one configuration, with their own short-timeout clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=3, socket_connect_timeout=3
        )

    @cached_property
    def _s3(self) -> Any:
        cfg = self.settings.storage
        quick = cfg.model_copy(update={"max_attempts": 1, "timeout": min(cfg.timeout, 5.0)})
        return make_s3_client(quick)

    def ready(self) -> list[Check]:
        return [self.check_redis(), self.check_storage(), self.check_scheduler()]

    def check_redis(self) -> Check:
        try:
            self.redis.ping()
        except redis.RedisError as err:
            return Check("redis", False, f"no answer to PING: {type(err).__name__}")
        return Check("redis", True, "PING answered")

    def check_storage(self) -> Check:
        cfg = self.settings.storage
        if cfg.scheme == "file":
            ok = cfg.directory.is_dir() and os.access(cfg.directory, os.W_OK | os.X_OK)
            return Check(
                "storage", ok, f"{cfg.directory} " + ("writable" if ok else "not writable")
            )
        key = keys.probe_key(cfg.prefix)
        try:
            self._s3.head_object(Bucket=cfg.bucket, Key=key)
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            hint = " (no bucket, or no probe object: run ingest check)" if status == 404 else ""
            return Check("storage", False, f"HEAD s3://{cfg.bucket}/{key}: {status}{hint}")
        except Exception as err:  # noqa: BLE001 - any other failure means "not reachable"
            return Check("storage", False, f"HEAD s3://{cfg.bucket} failed: {type(err).__name__}")
        return Check("storage", True, f"s3://{cfg.bucket} reachable")

    def last_tick(self) -> float | None:
        try:
            return _float(self.redis.get(keys.DISPATCH_TICK_KEY) or b"x")
        except redis.RedisError:
            return None

    def check_scheduler(self, tick: float | None = None) -> Check:
        tick = tick if tick is not None else self.last_tick()
        limit = self.settings.metrics.stale_ticks * self.settings.dispatch_interval
        if tick is None:
            return Check("scheduler", False, "no dispatcher tick recorded (is beat running?)")
        age = time.time() - tick
        detail = f"last dispatcher tick {age:.1f} s ago (limit {limit:g} s)"
        return Check("scheduler", age <= limit, detail)

    def last_successes(self) -> dict[str, float]:
        """Per account whose polls have ended, when its last successful one finished (0:
        none did). An account whose first poll has not ended yet is left out."""
        names = [a.name for a in self.settings.accounts]
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hmget(keys.last_poll_key(name), ["succeeded", "finished"])
        try:
            replies = pipe.execute()
        except redis.RedisError as err:
            raise IngestError(f"redis unavailable: {err}") from err
        return {
            name: _float(succeeded or b"0") or 0.0
            for name, (succeeded, finished) in zip(names, replies, strict=True)
            if finished is not None
        }


class StateCollector(Collector):
    """Scrape-time gauges from Redis and the config (one pipelined round trip + checks)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def collect(self) -> Iterator[Metric]:
        checks = GaugeMetricFamily(
            "ingest_health_check_ok", "1 when the readiness check passes.", labels=["check"]
        )
        tick = self.probe.last_tick()
        for check in (
            self.probe.check_redis(),
            self.probe.check_storage(),
            self.probe.check_scheduler(tick),
        ):
            checks.add_metric([check.name], float(check.ok))
        yield checks
        yield from self._accounts()
        if tick is not None:
            yield GaugeMetricFamily(
                "ingest_scheduler_last_tick_timestamp_seconds",
                "Unix time of the dispatcher's latest tick.",
                value=tick,
            )

    def _accounts(self) -> Iterator[Metric]:
        interval = GaugeMetricFamily(
            "ingest_account_poll_interval_seconds", "Configured poll interval.", labels=["account"]
        )
        for account in self.probe.settings.accounts:
            interval.add_metric([account.name], account.interval)
        yield interval
        try:
            successes = self.probe.last_successes()
        except IngestError:
            return
        last = GaugeMetricFamily(
            "ingest_last_success_timestamp_seconds",
            "Unix time the account's last successful poll finished (0: none did).",
            labels=["account"],
        )
        for name, when in successes.items():
            last.add_metric([name], when)
        yield last
