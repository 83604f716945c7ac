"""Prometheus metrics: their definitions and the few calls the rest of the code makes.

Multiprocess-safe: when ``PROMETHEUS_MULTIPROC_DIR`` is set before ``prometheus_client``
is first imported (the worker package does it, see ``workers/__init__.py``), every process
(Celery pool children, ``ingest poll``) writes its values into files in that directory and
:func:`scrape` adds them up. Without it, values live in this process only.

Label cardinality is bounded on purpose: ``account`` (the configured accounts), ``outcome``
(:data:`POLL_OUTCOMES`), ``operation`` (:data:`STORAGE_OPERATIONS`, :data:`POP3_OPERATIONS`),
``check`` (redis, storage, scheduler). No label ever carries a UIDL, key, host or error text.
No metric is created without labels, so importing this module writes no file: the worker
can clear the directory at start-up after the import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

from ingest.errors import AuthError
from ingest.model import PollReport

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
POLL_OUTCOMES = ("ok", "partial", "failed", "busy", "deferred")
STORAGE_OPERATIONS = ("put", "get", "head", "replace", "list", "other")
POP3_OPERATIONS = ("connect", "login", "fingerprint", "listing", "retr", "quit")
_S3_OPERATIONS = {
    "PutObject": "put",
    "GetObject": "get",
    "HeadObject": "head",
    "ListObjectsV2": "list",
}
_EXPECTED_STATUS = {404, 412}  # answers our protocol expects: absent key, create-only refusal
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_POLL_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

P = ParamSpec("P")
R = TypeVar("R")

MESSAGES = Counter(
    "ingest_messages_ingested", "Messages newly stored (raw + JSON), per account.", ["account"]
)
BYTES = Counter(
    "ingest_bytes_ingested", "Bytes of raw messages newly stored, per account.", ["account"]
)
POLLS = Counter("ingest_polls", "Polls by outcome, per account.", ["account", "outcome"])
POLL_SECONDS = Histogram(
    "ingest_poll_duration_seconds", "Duration of one poll (lock to QUIT).", ["account"],
    buckets=_POLL_BUCKETS,
)  # fmt: skip
AUTH_FAILURES = Counter(
    "ingest_auth_failures", "Polls whose login the server refused, per account.", ["account"]
)
ON_SERVER = Gauge(
    "ingest_messages_on_server",
    "Messages left on the server after the latest completed poll (listed - deleted).",
    ["account"],
    multiprocess_mode="mostrecent",
)
QUARANTINED = Gauge(
    "ingest_quarantined_messages",
    "Quarantined messages still on the server, as of the latest completed poll.",
    ["account"],
    multiprocess_mode="mostrecent",
)
STORAGE_SECONDS = Histogram(
    "ingest_storage_request_seconds", "Latency of one storage request, by operation.",
    ["operation"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
STORAGE_ERRORS = Counter(
    "ingest_storage_errors",
    "Storage requests that failed (no answer, or an error status), by operation.",
    ["operation"],
)
POP3_SECONDS = Histogram(
    "ingest_pop3_request_seconds",
    "POP3 latency by operation (connect incl. TLS; retr = one message's transfer).",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
EVENTS_PENDING = Gauge(
    "ingest_events_pending", "Events in the outbox not yet delivered, per account.", ["account"],
    multiprocess_mode="mostrecent",
)  # fmt: skip
EVENTS_DEAD = Gauge(
    "ingest_events_dead_letter", "Events given up on (dead-letter), per account.", ["account"],
    multiprocess_mode="mostrecent",
)  # fmt: skip
# Computed at scrape time from Redis and the config by ingest.health.StateCollector:
SCRAPE_TIME_METRICS = (
    "ingest_last_success_timestamp_seconds",
    "ingest_account_poll_interval_seconds",
    "ingest_scheduler_last_tick_timestamp_seconds",
    "ingest_health_check_ok",
)


def observe_poll(report: PollReport, seconds: float | None, error: BaseException | None) -> None:
    """Count one finished poll (any outcome); ``seconds`` is None for busy/deferred polls."""
    account = report.account
    POLLS.labels(account, report.outcome if report.outcome in POLL_OUTCOMES else "failed").inc()
    if report.stored:
        MESSAGES.labels(account).inc(report.stored)
        BYTES.labels(account).inc(report.bytes_stored)
    if seconds is not None:
        POLL_SECONDS.labels(account).observe(seconds)
    if isinstance(error, AuthError):
        AUTH_FAILURES.labels(account).inc()
    if report.outcome in ("ok", "partial"):
        ON_SERVER.labels(account).set(max(0, report.listed - report.deleted))
        QUARANTINED.labels(account).set(report.quarantined)


def set_event_counts(account: str, pending: int, dead: int) -> None:
    """For the events outbox: its pending and dead-letter counts for ``account``, as of now.

    Call it whenever the outbox counts are known (after a delivery round, say); the
    most recent value written by any process is what a scrape shows.
    """
    EVENTS_PENDING.labels(account).set(pending)
    EVENTS_DEAD.labels(account).set(dead)


def observe_storage(operation: str, seconds: float, failed: bool) -> None:
    op = operation if operation in STORAGE_OPERATIONS else "other"
    STORAGE_SECONDS.labels(op).observe(seconds)
    if failed:
        STORAGE_ERRORS.labels(op).inc()


def storage_timed(operation: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a storage method: its duration, and an error when it raises."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            failed = True
            try:
                result = fn(*args, **kwargs)
                failed = False
                return result
            finally:
                observe_storage(operation, time.perf_counter() - started, failed)

        return timed

    return decorate


def instrument_s3(client: Any) -> None:
    """Time every request of a boto3 S3 client (after botocore's retries) by operation."""
    events = client.meta.events
    events.register("before-call.s3", _s3_started)
    events.register("after-call.s3", _s3_answered)
    events.register("after-call-error.s3", _s3_unanswered)


def _s3_started(context: dict[str, Any], **_: Any) -> None:
    context["ingest_started"] = time.perf_counter()


def _s3_finished(model_name: str, context: dict[str, Any], failed: bool) -> None:
    started = context.pop("ingest_started", None)
    if started is not None:
        observe_storage(
            _S3_OPERATIONS.get(model_name, "other"), time.perf_counter() - started, failed
        )


def _s3_answered(http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
    status = int(getattr(http_response, "status_code", 0))
    _s3_finished(model.name, context, status >= 400 and status not in _EXPECTED_STATUS)


def _s3_unanswered(context: dict[str, Any], event_name: str = "", **_: Any) -> None:
    _s3_finished(event_name.rsplit(".", 1)[-1], context, True)


@contextmanager
def pop3_timer(operation: str) -> Iterator[None]:
    """Time one POP3 operation (whether it succeeds or not)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        POP3_SECONDS.labels(operation).observe(time.perf_counter() - started)


def pop3_timed(operation: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a POP3 session method with :func:`pop3_timer`."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            with pop3_timer(operation):
                return fn(*args, **kwargs)

        return timed

    return decorate


def multiprocess_dir() -> Path | None:
    """The directory every process writes its values to, or None (single process)."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


def clear_multiprocess_dir() -> None:
    """At worker start-up: drop the files of an earlier run, so counters start at zero."""
    path = multiprocess_dir()
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def process_exited(pid: int) -> None:
    """A pool child ``pid`` exited: forget its live gauges (counters keep counting)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def scrape(*extra: Collector) -> bytes:
    """The exposition text: every process's values (multiprocess mode) plus ``extra``."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path is not None:
        multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    else:
        for metric in _ALL:
            registry.register(metric)
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


_ALL = (
    MESSAGES, BYTES, POLLS, POLL_SECONDS, AUTH_FAILURES, ON_SERVER, QUARANTINED,
    STORAGE_SECONDS, STORAGE_ERRORS, POP3_SECONDS, EVENTS_PENDING, EVENTS_DEAD,
)  # fmt: skip


def exposed_names() -> set[str]:
    """Every sample name this project exposes, as a PromQL query names it."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set(SCRAPE_TIME_METRICS)
    for metric in _ALL:
        base = metric._name  # the family name prometheus_client keeps
        names.update(base + s for s in suffixes.get(metric._type, ("",)))
    return names
