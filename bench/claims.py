"""What one dispatcher tick costs in Redis, with 1,000 or 100,000 accounts in the table,
and what loading a config of that many accounts costs.

Measured directly on the bench's Redis with :class:`ingest.schedule.Schedule` (no Celery):
the table is filled with N accounts (interval 60 s, first due times spread by phase), then
``claim_due`` is timed with nothing due (the fixed cost of a tick) and with 1,000 due (the
cost per claimed account). Each claim is one round trip whatever N is.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import redis
import yaml

from ingest.config import AccountConfig
from ingest.config_load import load_settings
from ingest.schedule import Schedule

INTERVAL = 60


def _accounts(count: int) -> list[AccountConfig]:
    """Only what the schedule reads (name, interval); unvalidated, so 100,000 are quick."""
    return [
        AccountConfig.model_construct(name=f"c{i:06d}", interval=INTERVAL) for i in range(count)
    ]


def claim_costs(
    redis_url: str, totals: tuple[int, ...] = (1000, 100_000)
) -> list[dict[str, float]]:
    """Per table size: median µs of an empty tick, and µs per account of a 1,000-account claim."""
    client = redis.Redis.from_url(redis_url)
    out = []
    for total in totals:
        client.flushall()
        schedule = Schedule(client, batch=1000)
        schedule.sync(_accounts(total), now=0.0)
        idle = []
        for _ in range(21):
            t0 = time.perf_counter()
            schedule.claim_due(now=-1.0)
            idle.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        claimed = schedule.claim_due(now=INTERVAL * 1000 / total)
        busy = time.perf_counter() - t0
        out.append(
            {
                "accounts": total,
                "idle_tick_us": 1e6 * statistics.median(idle),
                "claimed": len(claimed),
                "claim_us_per_account": 1e6 * busy / max(1, len(claimed)),
            }
        )
    client.flushall()
    client.close()
    return out


def config_costs(tmp: Path, totals: tuple[int, ...]) -> list[dict[str, float]]:
    """Per size: seconds to load and validate a config file of that many accounts (what every
    worker start and every reload pays), and microseconds per account: flat when linear."""
    out = []
    for total in totals:
        accounts = [
            {"name": f"c{i:06d}", "host": "pop.example.com", "username": f"user{i}",
             "password_env": "BENCH_PW", "interval": INTERVAL}
            for i in range(total)
        ]  # fmt: skip
        data = {"storage": {"url": f"file://{tmp}/store"}, "accounts": accounts}
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        row: dict[str, float] = {"accounts": total}
        for form, text in (("", yaml.dump(data, Dumper=dumper)), ("json_", json.dumps(data))):
            path = tmp / f"accounts-{total}.yaml"  # the same name: JSON is YAML too
            path.write_text(text)
            t0 = time.perf_counter()
            settings = load_settings(str(path))
            seconds = time.perf_counter() - t0
            assert len(settings.accounts) == total and settings.account(f"c{total - 1:06d}")
            row |= {f"{form}seconds": seconds, f"{form}us_per_account": 1e6 * seconds / total}
            path.unlink()
        out.append(row)
    return out
