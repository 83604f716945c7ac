"""Celery tasks: ``ingest.dispatch`` (run by beat), ``ingest.poll_account`` (per account) and
``ingest.deliver_events`` (beat, and after a poll that fetched mail, for accounts with sinks).

Task arguments carry account names only, never a secret.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import redis
import structlog
from celery import Task

from ingest import health
from ingest.delivery import account_sinks, deliver_account
from ingest.errors import ConfigError, IngestError, PermanentError, TransientError
from ingest.interfaces import BlobStore
from ingest.schedule import Schedule
from ingest.service import poll_account as run_poll
from ingest.service import redis_client
from ingest.store import open_store
from workers.app import app, config, settings

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
        log.warning("poll.retry", account=name, error=str(err), retries=self.request.retries)
        raise self.retry(
            exc=err, countdown=backoff(self.request.retries, account.interval)
        ) from err
    except (PermanentError, ConfigError) as err:
        log.error("poll.permanent_failure", account=name, error=str(err), kind=type(err).__name__)
        return {"account": name, "outcome": "failed", "error": str(err)}
    finally:
        structlog.contextvars.unbind_contextvars("task_id")
    if report.fetched and account_sinks(current, current.account(name)):
        deliver_events.apply_async(args=[name], expires=current.events_interval * 4)
    return {"account": name, "outcome": report.outcome, "stored": report.stored}


@app.task(name="ingest.dispatch")
def dispatch() -> list[str]:
    """Enqueue a poll for every due account (atomic claim, safe with two beats)."""
    current = config.current(force=True)  # once per tick: added, changed, removed accounts
    schedule = Schedule(_redis())
    schedule.sync(current.accounts)
    due = schedule.claim_due()
    health.record_tick(_redis())  # readiness: the dispatcher ticked and claimed
    for name in due:
        poll_account.apply_async(args=[name], expires=current.account(name).interval)
    if due:
        log.info("dispatch.enqueued", accounts=len(due))
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
