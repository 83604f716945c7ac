"""Wire the real adapters (Redis, POP3, object store) around the pipeline for one account.

Both ``ingest poll`` and the Celery task call :func:`poll_account`, so a synchronous
poll from the command line runs exactly the code the workers run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import redis
import structlog

from ingest import keys, metrics
from ingest.account_store import account_store
from ingest.config import AccountConfig, Settings
from ingest.delivery import recording_hooks
from ingest.errors import AuthError, TransientError
from ingest.interfaces import BlobStore
from ingest.ledger import RedisLedger
from ingest.lock import AccountLock
from ingest.model import PollPlan, PollReport, StoredHook
from ingest.pipeline import ProgressHook, poll
from ingest.pop3 import Endpoint, Pop3Session, open_session
from ingest.pop3_auth import Credentials
from ingest.secret_refs import resolve_password
from ingest.store import open_store

if TYPE_CHECKING:
    from ingest.oauth import TokenSource

log = structlog.get_logger("ingest.service")


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )


def endpoint_for(account: AccountConfig, settings: Settings) -> Endpoint:
    return Endpoint(
        host=account.host,
        port=account.effective_port,
        security=account.security,
        timeout=account.timeout,
        ca_file=account.ca_file,
        allow_plaintext=account.allow_plaintext,
        deadline_seconds=settings.max_poll_seconds,
        allow_private=account.allow_private_network,
        fingerprint=account.tls_fingerprint,
    )


def plan_for(account: AccountConfig, settings: Settings) -> PollPlan:
    return PollPlan(
        account=account.name,
        prefix=settings.storage.prefix,
        delete=account.delete != "never",
        grace_seconds=settings.ledger_grace_days * 86400,
        quarantine_after=settings.quarantine_after,
        parse_max_bytes=settings.parse_max_bytes,
        max_message_size=account.max_message_size,
        oversize=account.oversize,
        ticket_pattern=account.ticket_pattern,
        store_concurrency=settings.store_concurrency,
        delete_after_seconds=(account.delete_after_days or 0) * 86400 or None,
    )


@contextmanager
def mailbox(
    settings: Settings, account: AccountConfig, client: redis.Redis
) -> Iterator[Pop3Session]:
    """An authenticated session of ``account`` with the configured method.

    For XOAUTH2 the access token comes from Redis (refreshed when due); a token the server
    refuses is forgotten, so the next poll fetches a new one.
    """
    tokens: TokenSource | None = None
    if account.auth == "xoauth2":
        from ingest.oauth import TokenSource  # noqa: PLC0415 - only XOAUTH2 accounts need it

        tokens = TokenSource(client, account, settings.source)
    secret = tokens.access_token() if tokens else resolve_password(account, settings.source)
    creds = Credentials(account.auth, account.username, secret, account.xoauth2_style)
    try:
        with open_session(endpoint_for(account, settings), creds) as session:
            yield session
    except AuthError:
        if tokens is not None:
            tokens.invalidate()
        raise


def poll_account(
    settings: Settings,
    name: str,
    *,
    client: redis.Redis | None = None,
    store: BlobStore | None = None,
    progress: ProgressHook | None = None,
) -> PollReport:
    """One complete poll of account ``name`` under its lock; ``outcome`` 'busy' if locked.

    ``progress`` (for a progress bar) is told how many messages were handled of how many.
    """
    account = settings.account(name)
    client = client or redis_client(settings)
    store = account_store(store or open_store(settings.storage), settings, name)
    if _login_delayed(client, name):
        return _skipped(PollReport(account=name, outcome="deferred"))
    lock = AccountLock(client, account.name, settings.lock_ttl)
    if not lock.acquire():
        log.info("poll.skipped_locked", account=name, holder=lock.holder())
        return _skipped(PollReport(account=name, outcome="busy"))
    started = time.time()
    report = PollReport(account=name)
    failure: Exception | None = None
    try:
        with lock, mailbox(settings, account, client) as session:
            _honour_capabilities(client, account, session)
            ledger = RedisLedger(client, account.name, lock.token, settings.lock_ttl)
            log.info("poll.started", account=name, fence=lock.token.split("-")[0])
            hooks = (
                *_index_hooks(store, settings),
                *recording_hooks(settings, client, account),  # the events outbox, if sinks
            )  # the index row first: an event then points at everything stored
            plan = plan_for(account, settings)
            poll(plan, session, ledger, store, lock, report=report, hooks=hooks,
                 progress=progress)  # fmt: skip
        log.info("poll.finished", account=name, **_fields(report), seconds=time.time() - started)
        return report
    except Exception as err:
        report.outcome = "failed"
        report.error = report.error or str(err)
        failure = err
        raise
    finally:
        _record_last(client, report, started)
        metrics.observe_poll(report, time.time() - started, failure)


def _index_hooks(store: BlobStore, settings: Settings) -> tuple[StoredHook, ...]:
    """The hook writing each stored message's index row, when ``storage.index`` is on."""
    if not settings.storage.index:
        return ()
    from ingest.index import index_hook  # noqa: PLC0415 - only an indexed store needs it

    return (index_hook(store, settings.storage.prefix),)


def _skipped(report: PollReport) -> PollReport:
    """A poll that did not run (busy, deferred) still counts in ``ingest_polls_total``."""
    metrics.observe_poll(report, None, None)
    return report


def _login_delayed(client: redis.Redis, name: str) -> bool:
    """True while the server's LOGIN-DELAY from the last login has not passed."""
    try:
        left = int(client.pttl(keys.login_delay_key(name)))
    except redis.RedisError as err:
        raise TransientError(f"redis unavailable: {err}") from err
    if left > 0:
        log.info("poll.deferred_login_delay", account=name, seconds_left=left / 1000)
    return left > 0


def _honour_capabilities(client: redis.Redis, account: AccountConfig, session: Pop3Session) -> None:
    """RFC 2449 LOGIN-DELAY: no new login before n seconds; EXPIRE: warn when the server
    will remove mail we were told to keep."""
    delay = session.capabilities.get("LOGIN-DELAY", "").split(" ")[0]
    if delay.isdigit() and int(delay) > 0:
        client.set(keys.login_delay_key(account.name), delay, ex=int(delay))
    expire = session.capabilities.get("EXPIRE", "").split(" ")[0].upper()
    days = int(expire) if expire.isdigit() else None  # EXPIRE n (days), NEVER or absent
    keep = account.delete == "never" or (account.delete_after_days or 0) > (days or 0)
    if keep and expire and expire != "NEVER":
        log.warning("mailbox.server_expires_mail", account=account.name, expire_days=expire)


def _fields(report: PollReport) -> dict[str, object]:
    return {
        "outcome": report.outcome,
        "listed": report.listed,
        "stored": report.stored,
        "already_stored": report.already_stored,
        "deleted": report.deleted,
        "parse_failures": report.parse_failures,
        "oversize": report.oversize,
        "quarantined": report.quarantined,
        "bytes": report.bytes_stored,
    }


def _record_last(client: redis.Redis, report: PollReport, started: float) -> None:
    data = {
        **_fields(report),
        "error": report.error or "",
        "started": started,
        "finished": time.time(),
    }
    if report.outcome == "ok":  # kept across failed polls: the last *successful* one
        data["succeeded"] = data["finished"]
    try:
        client.hset(
            keys.last_poll_key(report.account), mapping={k: json.dumps(v) for k, v in data.items()}
        )
        if report.stored:
            day = keys.stored_day_key(report.account, time.strftime("%Y-%m-%d", time.gmtime()))
            pipe = client.pipeline(transaction=False)
            pipe.incrby(day, report.stored)
            pipe.expire(day, 3 * 86400)
            pipe.execute()
    except redis.RedisError as err:
        log.warning("poll.status_not_recorded", account=report.account, error=str(err))


def check_redis(client: redis.Redis) -> str:
    """Reachability and the eviction policy we need (``noeviction``)."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "unknown")
    except redis.ResponseError:
        policy = "unknown (CONFIG disabled)"
    except redis.RedisError as err:
        raise TransientError(f"redis unreachable: {err}") from err
    return str(policy)
