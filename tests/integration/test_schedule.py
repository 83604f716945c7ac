"""The due-time table against a real redis-server: atomic claims, phases, backoff."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from ingest import keys
from ingest.config import AccountConfig
from ingest.schedule import BACKOFF_CAP, Schedule, phase


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


def _acct(name: str, interval: int) -> AccountConfig:
    return AccountConfig(name=name, host="h", username="u", password_env="X", interval=interval)


def test_schedule_claims_each_due_account_once(client: redis.Redis) -> None:
    """Two dispatchers claiming at the same moment never get the same account."""
    accounts = [_acct("a", 60), _acct("b", 120)]
    one, two = Schedule(client), Schedule(client)
    assert one.sync(accounts, now=100) and not two.sync(accounts, now=100)
    claimed = one.claim_due(now=300) + two.claim_due(now=300)
    assert sorted(claimed) == ["a", "b"]
    assert one.claim_due(now=359) == [] and one.claim_due(now=360) == ["a"]
    assert client.zscore(keys.SCHEDULE_KEY, "b") == 420


def test_schedule_follows_config_changes(client: redis.Redis) -> None:
    """Removed accounts stop being scheduled; new ones are due within one interval, at
    their phase, while known ones keep their due time."""
    s = Schedule(client)
    s.sync([_acct("a", 60), _acct("b", 60)], now=0)
    s.claim_due(now=60)
    assert s.sync([_acct("b", 60), _acct("c", 60)], now=70)
    assert client.zscore(keys.SCHEDULE_KEY, "c") == pytest.approx(70 + 60 * phase("c"))
    assert client.zscore(keys.SCHEDULE_KEY, "b") == 120
    assert sorted(s.claim_due(now=130)) == ["b", "c"]
    assert client.zscore(keys.SCHEDULE_KEY, "a") is None


def test_first_due_times_are_spread_over_the_interval(client: redis.Redis) -> None:
    """1,000 accounts added at once are first due spread over one interval, not in one second."""
    accounts = [_acct(f"acct{i:04d}", 60) for i in range(1000)]
    Schedule(client).sync(accounts, now=1000)
    scores = [s for _, s in client.zrange(keys.SCHEDULE_KEY, 0, -1, withscores=True)]
    assert min(scores) >= 1000 and max(scores) < 1060
    per_second = [sum(1 for s in scores if int(s) == second) for second in range(1000, 1060)]
    assert max(per_second) < 40  # evenly: about 17 a second
    assert sum(1 for s in scores if s < 1030) in range(400, 600)


def test_phase_is_a_fixed_fraction_of_the_name() -> None:
    """The phase depends on the name only, so restarts and rewrites keep the spread."""
    assert phase("acct1") == phase("acct1") != phase("acct2")
    assert all(0 <= phase(f"n{i}") < 1 for i in range(200))


def test_failures_push_the_next_poll_out_exponentially_up_to_the_cap(client: redis.Redis) -> None:
    """Each failure doubles the wait (interval, 2x, 4x ...) up to the cap; jitter adds <= 25%."""
    s = Schedule(client)
    s.sync([_acct("a", 60)], now=0)
    delays = [s.failed("a", now=1000, jitter=0.0) for _ in range(8)]
    assert delays == [60, 120, 240, 480, 960, 1920, BACKOFF_CAP, BACKOFF_CAP]
    assert client.zscore(keys.SCHEDULE_KEY, "a") == 1000 + BACKOFF_CAP
    assert s.failures("a") == 8
    s.succeeded("a")
    assert s.failures("a") == 0
    assert s.failed("a", now=2000, jitter=0.5) == 60 * 1.125


def test_backoff_is_never_shorter_than_a_long_interval(client: redis.Redis) -> None:
    """An account polled less often than the cap backs off by at least its interval."""
    s = Schedule(client)
    s.sync([_acct("slow", 7200)], now=0)
    assert s.failed("slow", now=0, jitter=0.0) == 7200
    assert s.failed("slow", now=0, jitter=0.0) == 7200


def test_a_failed_poll_of_a_removed_account_does_not_reschedule_it(client: redis.Redis) -> None:
    """Backoff never puts an account back that the config no longer has."""
    s = Schedule(client)
    s.sync([_acct("a", 60), _acct("b", 60)], now=0)
    s.failed("a", now=0, jitter=0.0)
    s.sync([_acct("b", 60)], now=10)
    assert s.failed("a", now=10) is None
    assert client.zscore(keys.SCHEDULE_KEY, "a") is None and s.failures("a") == 0


def test_claims_come_in_batches(client: redis.Redis) -> None:
    """A claim hands out at most ``batch`` accounts; the rest wait for the next claim."""
    s = Schedule(client, batch=3)
    s.sync([_acct(f"x{i}", 60) for i in range(7)], now=0)
    got = [s.claim_due(now=60) for _ in range(4)]
    assert [len(g) for g in got] == [3, 3, 1, 0]
    assert len({n for g in got for n in g}) == 7
