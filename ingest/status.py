"""What an operator asks first: per account, the last poll, its outcome and who polls now."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis

from ingest import keys
from ingest.config import AccountConfig, Settings
from ingest.errors import TransientError


@dataclass(frozen=True, slots=True)
class AccountStatus:
    account: str
    last_finished: float | None
    outcome: str
    listed: int
    stored: int
    deleted: int
    quarantined: int
    error: str
    lock_holder: str | None
    ledger_size: int
    events_pending: int = 0
    events_dead: int = 0
    events_error: str = ""  # "SINK: error" of each sink whose last attempt failed
    stored_today: int = 0  # messages stored since 00:00 UTC, by every poll
    backlog: int = 0  # listed by the last poll, neither stored nor deliberately left there

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def account_statuses(
    client: redis.Redis, names: list[str], day: str | None = None
) -> list[AccountStatus]:
    """One pipelined round trip for all accounts; ``day`` (UTC, default today) for the count."""
    day = day or time.strftime("%Y-%m-%d", time.gmtime())
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.last_poll_key(name))
        pipe.get(keys.lock_key(name))
        pipe.hlen(keys.ledger_key(name))
        pipe.get(keys.stored_day_key(name, day))
    try:
        replies = pipe.execute()
    except redis.RedisError as err:
        raise TransientError(f"redis unavailable: {err}") from err
    out = []
    for i, name in enumerate(names):
        last_raw, holder, size, today = replies[4 * i : 4 * i + 4]
        status = _status(name, last_raw, holder, int(size))
        out.append(replace(status, stored_today=int(today or 0)))
    return out


def _status(
    name: str, last_raw: dict[bytes, bytes], holder: bytes | None, size: int
) -> AccountStatus:
    last = {k.decode(): json.loads(v) for k, v in last_raw.items()}
    left = sum(int(last.get(k, 0)) for k in ("stored", "already_stored", "oversize", "quarantined"))
    return AccountStatus(
        account=name,
        last_finished=last.get("finished"),
        outcome=str(last.get("outcome", "never polled")),
        listed=int(last.get("listed", 0)),
        stored=int(last.get("stored", 0)),
        deleted=int(last.get("deleted", 0)),
        quarantined=int(last.get("quarantined", 0)),
        error=str(last.get("error", "")),
        lock_holder=holder.decode() if holder else None,
        ledger_size=size,
        backlog=max(0, int(last.get("listed", 0)) - left),
    )


def with_events(client: redis.Redis, rows: list[AccountStatus]) -> list[AccountStatus]:
    """The rows with their events outbox: pending and dead-lettered events, sink errors."""
    from ingest.outbox import sink_stats, totals  # noqa: PLC0415 - an optional feature

    stats = sink_stats(client, [r.account for r in rows])
    out = []
    for row in rows:
        sinks = stats[row.account]
        errors = [f"{name}: {s['error']}" for name, s in sorted(sinks.items()) if s.get("error")]
        pending, dead = totals(sinks)
        out.append(
            replace(row, events_pending=pending, events_dead=dead, events_error="; ".join(errors))
        )
    return out


def describe_account(account: AccountConfig) -> dict[str, Any]:
    """The account as loaded, secrets masked: only where they come from is shown."""
    data = account.model_dump(mode="json")
    if account.oauth2 is not None:
        data["oauth2"] = account.oauth2.model_dump(mode="json")
    return data


def describe_settings(settings: Settings) -> dict[str, Any]:
    from ingest.checks import redact_url  # noqa: PLC0415 - shared URL redaction

    data = settings.model_dump(mode="json", exclude={"accounts"})
    data["redis_url"] = redact_url(settings.redis_url)
    data["accounts"] = [describe_account(a) for a in settings.accounts]
    return data
