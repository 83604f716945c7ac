"""Celery tasks: ``ingest.dispatch`` (run by beat) and ``ingest.poll_account`` (per account).

Task arguments carry account names only, never a secret.
"""

from __future__ import annotations

import random
import time
from functools import cache
from typing import Any

import redis
import structlog
from celery import Task

from ingest.errors import ConfigError, PermanentError, TransientError
from ingest.interfaces import BlobStore
from ingest.schedule import Schedule, schedule_digest
from ingest.service import poll_account as run_poll
from ingest.service import redis_client
from ingest.store import open_store
from workers.app import app, settings

log = structlog.get_logger("workers.tasks")
MAX_RETRIES = 3


@cache
def _redis() -> redis.Redis:
    """One Redis client (connection pool) per worker process, made after the fork."""
    return redis_client(settings)


@cache
def _store() -> BlobStore:
    """One store (boto3 client, thread-safe) per worker process, made after the fork."""
    return open_store(settings.storage)


@cache
def _schedule() -> Schedule:
    """The shared due-time table, through this process's Redis client."""
    return Schedule(_redis())


@cache
def _digest() -> str:
    """The config's schedule digest, computed once: a tick does not walk every account."""
    return schedule_digest(settings.accounts)


@cache
def _intervals() -> dict[str, int]:
    """Account name -> interval, built once: a tick's cost grows with due accounts only."""
    return {a.name: a.interval for a in settings.accounts}


def _record_outcome(name: str, failed: bool) -> None:
    """Back the account off after a failure, reset its backoff after a completed poll."""
    try:
        if failed:
            delay = _schedule().failed(name)
            log.warning("poll.backed_off", account=name, next_in_seconds=delay)
        else:
            _schedule().succeeded(name)
    except TransientError as err:  # the poll's own outcome matters more than this
        log.warning("schedule.not_updated", account=name, error=str(err))


def backoff(retries: int, cap: float) -> float:
    """Exponential backoff with full jitter: 5 s, 10 s, 20 s ... never above ``cap``."""
    return random.uniform(0, min(cap, 5.0 * 2**retries))  # noqa: S311 - jitter, not crypto


@app.task(name="ingest.poll_account", bind=True, max_retries=MAX_RETRIES)
def poll_account(self: Task, name: str) -> dict[str, Any]:
    """Poll one account; retried with backoff on transient errors only."""
    structlog.contextvars.bind_contextvars(task_id=self.request.id)
    try:
        report = run_poll(settings, name, client=_redis(), store=_store())
    except TransientError as err:
        account = settings.account(name)
        if self.request.retries >= MAX_RETRIES:
            log.error("poll.gave_up", account=name, error=str(err))
            _record_outcome(name, failed=True)
            raise
        log.warning("poll.retry", account=name, error=str(err), retries=self.request.retries)
        raise self.retry(
            exc=err, countdown=backoff(self.request.retries, account.interval)
        ) from err
    except (PermanentError, ConfigError) as err:
        log.error("poll.permanent_failure", account=name, error=str(err), kind=type(err).__name__)
        _record_outcome(name, failed=True)
        return {"account": name, "outcome": "failed", "error": str(err)}
    finally:
        structlog.contextvars.unbind_contextvars("task_id")
    if report.outcome in ("ok", "partial"):
        _record_outcome(name, failed=False)
    return {"account": name, "outcome": report.outcome, "stored": report.stored}


@app.task(name="ingest.dispatch")
def dispatch() -> list[str]:
    """Enqueue a poll for every due account (atomic claim, safe with two beats).

    Two Redis round trips per tick (digest check, claim; one more claim per further batch of
    ``Schedule.batch``), then one publish per due account.
    """
    started = time.perf_counter()
    schedule = _schedule()
    schedule.sync(settings.accounts, digest=_digest())
    intervals = _intervals()
    due: list[str] = []
    with app.producer_or_acquire() as producer:  # one producer for the tick's publishes
        while True:  # in batches: more than ``batch`` due accounts take more than one claim
            batch = schedule.claim_due()
            for name in batch:
                poll_account.apply_async(args=[name], expires=intervals[name], producer=producer)
            due += batch
            if len(batch) < schedule.batch:
                break
    if due:
        seconds = round(time.perf_counter() - started, 6)
        log.info("dispatch.enqueued", accounts=len(due), seconds=seconds)
    return due
