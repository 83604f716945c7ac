"""Celery tasks: ``ingest.dispatch`` (run by beat), ``ingest.poll_account`` (per account) and
``ingest.deliver_events`` (beat, and after a poll that fetched mail, for accounts with sinks).

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

from ingest import health
from ingest.config import Settings
from ingest.delivery import account_sinks, deliver_account
from ingest.errors import ConfigError, IngestError, PermanentError, TransientError
from ingest.interfaces import BlobStore
from ingest.schedule import Schedule, schedule_digest
from ingest.service import poll_account as run_poll
from ingest.service import redis_client
from ingest.store import open_store
from workers.app import app, config, settings
from workers.publish import publish_polls

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


_TABLE: dict[str, Any] = {}


def _table(current: Settings) -> tuple[str, dict[str, int]]:
    """The config's schedule digest and account -> interval map, computed once per loaded
    config (a reload makes a new one): a tick's cost grows with due accounts only."""
    if _TABLE.get("settings") is not current:
        intervals = {a.name: a.interval for a in current.accounts}
        _TABLE.update(
            settings=current, digest=schedule_digest(current.accounts), intervals=intervals
        )
    return _TABLE["digest"], _TABLE["intervals"]


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
    current = config.current()
    if name not in {a.name for a in current.accounts}:
        current = config.current(force=True)  # dispatched by a worker that reloaded first
    if name not in {a.name for a in current.accounts}:
        log.info("poll.skipped_removed_account", account=name)
        return {"account": name, "outcome": "removed"}
    try:
        report = run_poll(current, name, client=_redis(), store=_store())
    except TransientError as err:
        account = current.account(name)
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
    if report.fetched and account_sinks(current, current.account(name)):
        deliver_events.apply_async(args=[name], expires=current.events_interval * 4)
    return {"account": name, "outcome": report.outcome, "stored": report.stored}


@app.task(name="ingest.dispatch")
def dispatch() -> list[str]:
    """Enqueue a poll for every due account (atomic claim, safe with two beats).

    Two Redis round trips per tick (digest check, claim; one more claim per further batch of
    ``Schedule.batch``), and one more per claimed batch to publish its polls.
    """
    started = time.perf_counter()
    current = config.current(force=True)  # once per tick: added, changed, removed accounts
    digest, intervals = _table(current)
    schedule = _schedule()
    schedule.sync(current.accounts, digest=digest)
    due: list[str] = []
    with app.producer_or_acquire() as producer:  # one producer for the tick's publishes
        while True:  # in batches: more than ``batch`` due accounts take more than one claim
            batch = schedule.claim_due()
            publish_polls(poll_account, producer, batch, intervals)
            due += batch
            if len(batch) < schedule.batch:
                break
    health.record_tick(_redis())  # readiness: the dispatcher ticked and claimed
    if due:
        seconds = round(time.perf_counter() - started, 6)
        log.info("dispatch.enqueued", accounts=len(due), seconds=seconds)
    return due


def send_event_task(task: str, queue: str, event: dict[str, Any]) -> None:
    """The celery sink's sender: task ``task`` on ``queue`` with the CloudEvent as argument."""
    policy = {"max_retries": 2, "interval_start": 0.5, "interval_step": 1.0}
    app.send_task(task, args=[event], queue=queue, retry=True, retry_policy=policy)


@app.task(name="ingest.deliver_events")
def deliver_events(name: str | None = None) -> dict[str, int]:
    """Send due events of account ``name`` (default: every account with sinks)."""
    current = config.current()
    names = [name] if name else [a.name for a in current.accounts if account_sinks(current, a)]
    delivered = {}
    for account in names:
        try:
            report = deliver_account(current, _redis(), account, sender=send_event_task)
        except IngestError as err:  # Redis down, account gone: the next run tries again
            log.warning("events.run_failed", account=account, error=str(err))
            continue
        delivered[account] = report.delivered
    return delivered
