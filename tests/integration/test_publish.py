"""Publishing a claimed batch of polls into a real Redis broker, and what a failed batch does."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from celery import Celery
from kombu.messaging import _ProducerBatchState
from kombu.transport.redis import PublishBatch
from redis.client import Pipeline

from workers.publish import publish_polls


@pytest.fixture
def app(redis_url: str) -> Iterator[Celery]:
    app = Celery("publish-test", broker=redis_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)
    yield app
    app.close()


def _poll_task(app: Celery) -> Any:
    def poll_account(name: str) -> None:
        """Stands in for workers.tasks.poll_account (never run here)."""

    return app.task(name="ingest.poll_account")(poll_account)


def _queued(redis_url: str) -> list[dict[str, Any]]:
    """The tasks waiting in the default queue, oldest first: name, argument, expiry."""
    client = redis.Redis.from_url(redis_url)
    out = []
    for raw in reversed(client.lrange("celery", 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        headers = message["headers"]
        out.append({"task": headers["task"], "args": args, "expires": headers["expires"]})
    return out


def test_a_batch_of_polls_reaches_the_broker_in_one_pipeline(
    app: Celery, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every account of the batch is queued, in order, with its own expiry, and the
    LPUSHes went out in one pipeline execution (one round trip)."""
    poll = _poll_task(app)
    executed = []
    real_flush = PublishBatch.flush

    def flush(self: PublishBatch) -> None:
        executed.append(self._buffered)
        real_flush(self)

    monkeypatch.setattr(PublishBatch, "flush", flush)
    names = [f"acct{i}" for i in range(50)]
    with app.producer_or_acquire() as producer:
        publish_polls(poll, producer, names, {"acct0": 300})
    queued = _queued(redis_url)
    assert [q["args"] for q in queued] == [[n] for n in names]
    assert {q["task"] for q in queued} == {"ingest.poll_account"}
    first, second = (datetime.fromisoformat(q["expires"]) for q in queued[:2])
    assert 230 < (first - second).total_seconds() < 250  # acct0: 300 s, the others 60 s
    assert [e for e in executed if e] == [50]


def test_a_failed_batch_is_published_again_one_by_one(
    app: Celery, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker fails while the batch is sent: no account is left unpublished (each
    would otherwise wait a whole interval, its claim already made); one published twice
    only finds its account locked."""
    poll = _poll_task(app)

    real_execute = Pipeline.execute
    calls = []

    def cut_once(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(self.command_stack))
        if len(calls) == 1:
            raise redis.ConnectionError("Connection reset by peer")
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", cut_once)
    names = ["a", "b", "c"]
    with app.producer_or_acquire() as producer:
        publish_polls(poll, producer, names, {})
    assert calls[0] == 3  # the batch was one pipeline; it failed as a whole
    assert [q["args"] for q in _queued(redis_url)] == [["a"], ["b"], ["c"]]


def test_nothing_due_publishes_nothing(app: Celery, redis_url: str) -> None:
    poll = _poll_task(app)
    with app.producer_or_acquire() as producer:
        publish_polls(poll, producer, [], {})
    assert _queued(redis_url) == []


def test_a_batch_whose_channel_was_revived_is_published_one_by_one(
    app: Celery, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker blip while a publish declares its queue makes Celery's retry revive the
    channel; kombu then refuses to add to the open batch (RuntimeError). Every account is
    still published, one by one."""
    poll = _poll_task(app)
    real_publish = _ProducerBatchState.publish
    refused = []

    def revived(self: _ProducerBatchState, *args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(True)
            raise RuntimeError("Producer channel changed while a publish batch was active")
        return real_publish(self, *args, **kwargs)

    monkeypatch.setattr(_ProducerBatchState, "publish", revived)
    with app.producer_or_acquire() as producer:
        publish_polls(poll, producer, ["a", "b"], {})
    assert refused and [q["args"] for q in _queued(redis_url)] == [["a"], ["b"]]
