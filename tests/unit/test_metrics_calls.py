"""What a poll report adds to the metrics per outcome, and liveness (no sockets)."""

from __future__ import annotations

import secrets
import time

from prometheus_client import REGISTRY
from pytest import MonkeyPatch

from ingest import health
from ingest.errors import AuthError, TransientError
from ingest.metrics import observe_poll, set_event_counts
from ingest.model import PollReport


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def fresh_account() -> str:
    return f"acct-{secrets.token_hex(4)}"


def test_a_completed_poll_counts_messages_bytes_and_what_is_left() -> None:
    """An ok poll adds its stored messages and bytes and sets listed - deleted as left."""
    name = fresh_account()
    report = PollReport(name, listed=7, stored=4, deleted=5, bytes_stored=900, quarantined=2)
    report.outcome = "ok"
    observe_poll(report, 1.5, None)
    assert sample("ingest_messages_ingested_total", account=name) == 4
    assert sample("ingest_bytes_ingested_total", account=name) == 900
    assert sample("ingest_polls_total", account=name, outcome="ok") == 1
    assert sample("ingest_poll_duration_seconds_sum", account=name) == 1.5
    assert sample("ingest_messages_on_server", account=name) == 2
    assert sample("ingest_quarantined_messages", account=name) == 2


def test_a_busy_poll_counts_as_a_poll_without_a_duration() -> None:
    """A poll that found the lock taken counts under outcome busy, with no duration observed."""
    name = fresh_account()
    observe_poll(PollReport(account=name, outcome="busy"), None, None)
    assert sample("ingest_polls_total", account=name, outcome="busy") == 1
    assert sample("ingest_poll_duration_seconds_count", account=name) is None
    assert sample("ingest_messages_on_server", account=name) is None


def test_only_a_refused_login_counts_as_an_auth_failure() -> None:
    """AuthError adds an auth failure; another failure only a failed poll; gauges stay unset."""
    name = fresh_account()
    observe_poll(PollReport(account=name, outcome="failed"), 0.2, AuthError("PASS refused"))
    observe_poll(PollReport(account=name, outcome="failed"), 0.2, TransientError("timeout"))
    assert sample("ingest_auth_failures_total", account=name) == 1
    assert sample("ingest_polls_total", account=name, outcome="failed") == 2
    assert sample("ingest_messages_on_server", account=name) is None


def test_an_unknown_outcome_is_counted_as_failed() -> None:
    """The outcome label stays within its fixed set whatever a report says."""
    name = fresh_account()
    observe_poll(PollReport(account=name, outcome="running"), 0.1, None)
    assert sample("ingest_polls_total", account=name, outcome="failed") == 1
    assert sample("ingest_polls_total", account=name, outcome="running") is None


def test_event_counts_are_set_as_given() -> None:
    """set_event_counts publishes the outbox's pending and dead-letter counts."""
    name = fresh_account()
    set_event_counts(name, 12, 3)
    set_event_counts(name, 10, 4)
    assert sample("ingest_events_pending", account=name) == 10
    assert sample("ingest_events_dead_letter", account=name) == 4


def test_liveness_fails_once_the_event_loop_stops_touching(monkeypatch: MonkeyPatch) -> None:
    """/healthz is healthy right after a touch and unhealthy when the last one is too old."""
    health.touch()
    assert health.liveness().ok is True
    monkeypatch.setattr(health, "_last_touch", time.monotonic() - health.LIVENESS_MAX_AGE - 1)
    assert health.liveness().ok is False
