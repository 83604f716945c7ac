"""The events outbox on a real Redis: idempotent records, leased claims, backoff, dead letters."""

from __future__ import annotations

from pathlib import Path

import redis
from support import run_cli, write_config

from ingest.events import Event
from ingest.outbox import Outbox, leftover_sinks, sink_stats

POLICY = (3, 10.0, 25.0)  # max_attempts, first delay, largest delay


def _outbox(url: str, sinks: tuple[str, ...] = ("hook", "stream")) -> Outbox:
    return Outbox(redis.Redis.from_url(url), "support", sinks)


def _event(n: int) -> Event:
    return Event(f"id{n}", "support", f'{{"id":"id{n}"}}')


def _counts(url: str) -> dict[str, dict[str, object]]:
    return sink_stats(redis.Redis.from_url(url), ["support"])["support"]


def test_recording_is_idempotent_per_sink_and_counts_pending(redis_url: str) -> None:
    """The same event recorded twice (a replayed hook) is pending once for each sink."""
    box = _outbox(redis_url)
    assert box.record(_event(1), 100.0) == 2
    assert box.record(_event(1), 101.0) == 0
    assert box.record(_event(2), 102.0) == 2
    assert [e.id for e in box.entries("hook", dead=False)] == ["id1", "id2"]
    assert _counts(redis_url) == {"hook": {"pending": 2}, "stream": {"pending": 2}}


def test_a_claim_hides_events_for_its_lease_and_an_ack_removes_them(redis_url: str) -> None:
    """Two workers never get the same due event at once; an acked event is gone for good,
    while an unacked one (its worker died) comes back when the lease ends."""
    box = _outbox(redis_url)
    for n in range(3):
        box.record(_event(n), 100.0)
    first = box.claim("hook", 100.0, lease=60, batch=2)
    assert [e.id for e in first] == ["id0", "id1"] and first[0].body == '{"id":"id0"}'
    assert [e.id for e in box.claim("hook", 100.0, lease=60, batch=10)] == ["id2"]
    assert box.claim("hook", 159.0, lease=60, batch=10) == []
    assert box.ack("hook", "id0", 150.0) and not box.ack("hook", "id0", 151.0)
    assert [e.id for e in box.claim("hook", 161.0, lease=60, batch=10)] == ["id1", "id2"]
    assert [e.id for e in box.claim("stream", 100.0, lease=60, batch=10)] == ["id0", "id1", "id2"]
    hook = _counts(redis_url)["hook"]
    assert (hook["pending"], hook["delivered"], hook["delivered_at"]) == (2, 1, 150.0)


def test_failures_back_off_exponentially_then_dead_letter_and_requeue(redis_url: str) -> None:
    """Delay = min(max, first * 2^(n-1)) scaled by jitter into [1/2, 1]; after max_attempts
    the event is dead, listed as such, and a requeue makes it pending with fresh attempts."""
    box = _outbox(redis_url, ("hook",))
    box.record(_event(1), 0.0)
    box.claim("hook", 0.0, lease=60, batch=1)
    first = box.fail("hook", "id1", 1000.0, "HTTP 503", policy=POLICY, jitter=1.0)
    assert (first.attempts, first.retry_at) == (1, 1010.0)
    second = box.fail("hook", "id1", 2000.0, "HTTP 503", policy=POLICY, jitter=0.0)
    assert (second.attempts, second.retry_at) == (2, 2010.0)  # 20 s, halved by the jitter
    counts = _counts(redis_url)["hook"]
    assert (counts["failures"], counts["error"], counts["error_at"]) == (2, "HTTP 503", 2000.0)
    dead = box.fail("hook", "id1", 3000.0, "HTTP 500", policy=POLICY, jitter=1.0)
    assert (dead.attempts, dead.retry_at) == (3, None)
    assert box.claim("hook", 10**9, lease=60, batch=10) == []
    (entry,) = box.entries("hook", dead=True)
    assert (entry.id, entry.when, entry.attempts, entry.body) == ("id1", 3000.0, 3, '{"id":"id1"}')
    assert (_counts(redis_url)["hook"]["pending"], _counts(redis_url)["hook"]["dead"]) == (0, 1)
    assert box.record(_event(1), 3001.0) == 0  # a replay does not resurrect it behind our back
    assert box.requeue("hook", [], 4000.0) == 1 and box.requeue("hook", [], 4000.0) == 0
    (back,) = box.entries("hook", dead=False)
    assert (back.when, back.attempts) == (4000.0, 0)
    assert (_counts(redis_url)["hook"]["pending"], _counts(redis_url)["hook"]["dead"]) == (1, 0)
    assert box.ack("hook", "id1", 4001.0) and "error" not in _counts(redis_url)["hook"]


def test_the_backoff_is_capped_and_deferred_events_keep_their_attempts(redis_url: str) -> None:
    """The delay never exceeds the largest delay; events put back unsent count no attempt."""
    box = _outbox(redis_url, ("hook",))
    box.record(_event(1), 0.0)
    box.record(_event(2), 0.0)
    box.claim("hook", 0.0, lease=60, batch=2)
    for n in range(1, 3):
        failure = box.fail("hook", "id1", 0.0, "down", policy=(9, 10.0, 25.0), jitter=1.0)
        assert failure.retry_at == min(25.0, 10.0 * 2 ** (n - 1))
    capped = box.fail("hook", "id1", 0.0, "down", policy=(9, 10.0, 25.0), jitter=1.0)
    assert capped.retry_at == 25.0
    box.defer("hook", ["id2"], 25.0)
    assert {(e.id, e.when, e.attempts) for e in box.entries("hook", dead=False)} == {
        ("id1", 25.0, 3), ("id2", 25.0, 0),
    }  # fmt: skip


def test_a_removed_sinks_outbox_is_listed_then_pruned_and_the_others_stay(
    redis_url: str, tmp_path: Path
) -> None:
    """`ingest events prune` names the sink the config no longer has, with its pending and
    dead counts, deletes nothing without --yes, and with it deletes that sink's keys and
    counters only (another account's sink of the same name, still configured, stays)."""
    box = _outbox(redis_url)
    for n in range(3):
        box.record(_event(n), 100.0)
    box.claim("stream", 100.0, lease=60, batch=1)
    box.fail("stream", "id0", 100.0, "down", policy=(1, 1.0, 1.0), jitter=1.0)  # dead
    Outbox(redis.Redis.from_url(redis_url), "billing", ("stream",)).record(_event(9), 1.0)
    client = redis.Redis.from_url(redis_url)
    before = sorted(k.decode() for k in client.keys("ingest:*"))
    assert leftover_sinks(client, "support", ["hook"]) == {"stream": (2, 1)}
    stream_sink = {"type": "redis_stream", "name": "stream"}
    accounts = [
        {"name": n, "host": "127.0.0.1", "port": 1, "username": n, "password_env": "PW",
         "events": ev} for n, ev in (("support", [{**stream_sink, "name": "hook"}]),
                                     ("billing", [stream_sink]))
    ]  # fmt: skip
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, directory=tmp_path / "s", accounts=accounts
    )
    listed = run_cli(cfg, "events", "prune")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.splitlines() == ["support\tstream\t2 pending\t1 dead\tnot in the config"]
    assert "--yes" in listed.stderr
    assert sorted(k.decode() for k in client.keys("ingest:*")) == before
    pruned = run_cli(cfg, "events", "prune", "--yes")
    assert pruned.stdout.splitlines() == ["support\tstream\t2 pending\t1 dead\tdeleted"]
    assert client.keys("ingest:{support}:outbox:stream:*") == []
    assert set(_counts(redis_url)) == {"hook"}
    assert [e.id for e in box.entries("hook", dead=False)] == ["id0", "id1", "id2"]
    billing = Outbox(client, "billing", ("stream",)).entries("stream", dead=False)
    assert [e.id for e in billing] == ["id9"]
    for command in ("prune", "list"):  # an unknown account: a config error, no traceback
        unknown = run_cli(cfg, "events", command, "nosuch")
        assert unknown.returncode == 78, unknown.stderr[-2000:]
        assert unknown.stderr.startswith("config error: ") and "'nosuch'" in unknown.stderr
    again = run_cli(cfg, "events", "prune", "--yes")
    assert again.returncode == 0 and again.stdout == ""
    assert "no outbox of a removed sink" in again.stderr
