"""Events end to end with real Dovecot, moto S3, Redis and an HTTPS webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from support import (
    account_entry,
    assert_stored_exactly_once,
    bucket_objects,
    password_env,
    poll_until_unlocked,
    run_cli,
    split_objects,
    wait_until,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, as_pop3, corpus_files
from harness.tls import make_server_tls
from harness.webhook_server import WebhookServer
from ingest.events import EVENT_TYPE, event_id

STREAM = "test:events"
SECRET = "whsec-test-4f1d"


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[WebhookServer]:
    """A local HTTPS receiver with a certificate of a throw-away CA."""
    with WebhookServer(make_server_tls(tmp_path / "webhook-tls")) as server:
        yield server


def _deliver(user: MailUser, dovecot: Dovecot, count: int, offset: int = 60) -> set[bytes]:
    expected = set()
    for path in corpus_files()[offset : offset + count]:
        dovecot.deliver(user.name, path.read_bytes())
        expected.add(as_pop3(path.read_bytes()))
    return expected


def _hook_sink(webhook: WebhookServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "type": "webhook", "url": webhook.url, "secret_env": "HOOK_SECRET",
        "ca_file": str(tmp_path / "webhook-tls" / "ca.pem"), "timeout": 5, **extra,
    }  # fmt: skip


def _config(
    tmp_path: Path, dovecot: Dovecot, user: MailUser, s3: MotoS3, bucket: str, redis_url: str,
    sinks: list[dict[str, Any]], **extra: Any,
) -> tuple[Path, dict[str, str]]:  # fmt: skip
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3, bucket=bucket, prefix="ev",
        accounts=[account_entry(dovecot, user)], events=sinks, **extra,
    )  # fmt: skip
    return cfg, {password_env("support"): user.password, "HOOK_SECRET": SECRET}


def _stream_events(redis_url: str) -> list[dict[str, Any]]:
    """Everything on the stream, read as a consumer group reads it (from the beginning)."""
    client = redis.Redis.from_url(redis_url)
    client.xgroup_create(STREAM, "tickets", id="0", mkstream=True)
    replies = client.xreadgroup("tickets", "worker-1", {STREAM: ">"}, count=1000) or []
    out = []
    for _, entries in replies:
        for entry_id, fields in entries:
            client.xack(STREAM, "tickets", entry_id)
            assert fields[b"id"] == json.loads(fields[b"event"])["id"].encode()
            out.append(json.loads(fields[b"event"]))
    return out


def _expected_ids(s3: MotoS3, bucket: str) -> set[str]:
    """The event id of every stored message, from its JSON document (account, UIDL, sha)."""
    _, docs = split_objects(bucket_objects(s3, bucket))
    return {event_id(d["account"], d["uidl"], d["sha256"]) for d in map(json.loads, docs.values())}


def _logs(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _status(cfg: Path, env: dict[str, str]) -> dict[str, Any]:
    result = run_cli(cfg, "status", "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    row: dict[str, Any] = json.loads(result.stdout)
    return row


def test_a_poll_puts_one_event_per_stored_message_on_a_stream_for_consumer_groups(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str,
) -> None:  # fmt: skip
    """Each stored message gives one CloudEvent whose id is account+UIDL+sha256 and whose
    keys name the stored objects; a consumer group reads them all from the stream."""
    expected = _deliver(mail_user, dovecot, 4)
    sink = {"type": "redis_stream", "stream": STREAM, "url": redis_url, "maxlen": 10000}
    cfg, env = _config(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, [sink])
    polled = run_cli(cfg, "poll", "support", env=env)
    assert polled.returncode == 0, polled.stderr[-3000:]
    assert _status(cfg, env)["events_pending"] == 4
    delivered = run_cli(cfg, "events", "deliver", env=env)
    assert delivered.returncode == 0 and "delivered 4, failed 0" in delivered.stdout
    events = _stream_events(redis_url)
    assert_stored_exactly_once(s3_server, bucket, expected)
    objects = bucket_objects(s3_server, bucket)
    assert {e["id"] for e in events} == _expected_ids(s3_server, bucket) and len(events) == 4
    for event in events:
        assert (event["specversion"], event["type"]) == ("1.0", EVENT_TYPE)
        data = event["data"]
        assert hashlib.sha256(objects[data["raw_key"]]).hexdigest() == data["sha256"]
        assert json.loads(objects[data["json_key"]])["uidl"] == data["uidl"]
    row = _status(cfg, env)
    assert (row["events_pending"], row["events_dead"], row["events_error"]) == (0, 0, "")


def test_a_crash_after_the_hook_replays_the_same_ids_and_loses_no_event(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str,
) -> None:  # fmt: skip
    """Killed between recording an event and the ledger mark, then delivered and polled
    again: every stored message has its event, repeats carry the id they had before."""
    expected = _deliver(mail_user, dovecot, 5)
    sink = {"type": "redis_stream", "stream": STREAM}
    cfg, env = _config(
        tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, [sink], lock_ttl=2
    )
    killed = run_cli(cfg, "poll", "support", env={**env, "INGEST_FAILPOINT": "after_hooks:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert dovecot.message_count(mail_user.name) == 5  # nothing committed
    assert run_cli(cfg, "events", "deliver", env=env).returncode == 0
    poll_until_unlocked(cfg, env)
    assert run_cli(cfg, "events", "deliver", env=env).returncode == 0
    assert_stored_exactly_once(s3_server, bucket, expected)
    ids = [e["id"] for e in _stream_events(redis_url)]
    assert set(ids) == _expected_ids(s3_server, bucket) and len(set(ids)) == 5
    assert dovecot.message_count(mail_user.name) == 0


def test_the_webhook_receives_events_signed_with_hmac_sha256(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str, webhook: WebhookServer,
) -> None:  # fmt: skip
    """Each POST is the CloudEvent, verified over TLS, signed HMAC-SHA256(secret, TS.BODY)."""
    _deliver(mail_user, dovecot, 2)
    sinks = [_hook_sink(webhook, tmp_path)]
    cfg, env = _config(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, sinks)
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    delivered = run_cli(cfg, "events", "deliver", env=env)
    assert delivered.returncode == 0, delivered.stderr[-3000:]
    assert len(webhook.received) == 2
    for request in webhook.received:
        stamp = request.headers["x-ingest-timestamp"]
        mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + request.body, hashlib.sha256)
        assert request.headers["x-ingest-signature"] == f"sha256={mac.hexdigest()}"
        assert request.headers["content-type"].startswith("application/cloudevents+json")
        assert request.headers["x-ingest-event-id"] == json.loads(request.body)["id"]
    received = {json.loads(r.body)["id"] for r in webhook.received}
    assert received == _expected_ids(s3_server, bucket)
    assert SECRET not in delivered.stdout + delivered.stderr


def test_a_broken_webhook_never_blocks_polls_and_gets_its_events_once_it_recovers(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str, webhook: WebhookServer,
) -> None:  # fmt: skip
    """While the webhook answers 503 mail keeps flowing, events wait with backoff, and the
    problem shows in status and logs; after recovery each event arrives and status clears."""
    expected = _deliver(mail_user, dovecot, 3)
    sinks = [_hook_sink(webhook, tmp_path, retry_delay=1, retry_delay_max=2)]
    cfg, env = _config(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, sinks)
    webhook.fail_always()
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    assert_stored_exactly_once(s3_server, bucket, expected)
    assert dovecot.message_count(mail_user.name) == 0
    failed = run_cli(cfg, "events", "deliver", env=env)
    assert failed.returncode == 1 and "failed 1" in failed.stdout  # one try, the rest wait
    (log,) = [r for r in _logs(failed.stderr) if r["event"] == "event.delivery_failed"]
    assert (log["sink"], log["attempts"], log["error"]) == (
        "webhook",
        1,
        "HTTP 503 Service Unavailable",
    )
    assert 0.5 <= log["retry_in"] <= 1.0  # first delay 1 s, jittered into [0.5, 1]
    row = _status(cfg, env)
    assert (row["events_pending"], row["events_dead"]) == (3, 0)
    assert row["events_error"] == "webhook: HTTP 503 Service Unavailable"
    assert "HTTP 503" in run_cli(cfg, "status", env=env).stdout
    listed = run_cli(cfg, "events", "list", "--json", env=env)
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(e["attempts"] for e in entries) == [0, 0, 1]
    assert {e["event"]["id"] for e in entries} == _expected_ids(s3_server, bucket)
    webhook.recover()
    wait_until(lambda: _status(cfg, env)["events_pending"] == 0 or _deliver_ok(cfg, env), 60, [])
    assert sorted(json.loads(r.body)["id"] for r in webhook.received) == sorted(
        _expected_ids(s3_server, bucket)
    )
    assert _status(cfg, env)["events_error"] == ""


def _deliver_ok(cfg: Path, env: dict[str, str]) -> bool:
    """One ``ingest events deliver``; true when it left nothing pending."""
    run_cli(cfg, "events", "deliver", env=env)
    return bool(_status(cfg, env)["events_pending"] == 0)


def test_events_dead_letter_after_max_attempts_and_the_cli_requeues_them(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str, webhook: WebhookServer,
) -> None:  # fmt: skip
    """After max_attempts failures an event is dead-lettered (listed, counted in status);
    ``ingest events retry --all`` puts it back and it is delivered once the sink works."""
    _deliver(mail_user, dovecot, 2)
    sinks = [_hook_sink(webhook, tmp_path, max_attempts=2, retry_delay=0.05, retry_delay_max=0.1)]
    cfg, env = _config(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, sinks)
    webhook.fail_always(500)
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    wait_until(lambda: _deliver_dead(cfg, env) == 2, 90, [])
    assert webhook.refused == 4 and webhook.received == []
    dead = run_cli(cfg, "events", "list", "--dead", env=env)
    assert len(dead.stdout.splitlines()) == 2 and "2 attempt(s)" in dead.stdout
    assert run_cli(cfg, "events", "list", env=env).stdout == ""
    webhook.recover()
    retried = run_cli(cfg, "events", "retry", "support", "--all", env=env)
    assert retried.returncode == 0 and "2 event(s) back" in retried.stdout
    assert run_cli(cfg, "events", "deliver", env=env).returncode == 0
    assert {json.loads(r.body)["id"] for r in webhook.received} == _expected_ids(s3_server, bucket)
    row = _status(cfg, env)
    assert (row["events_pending"], row["events_dead"], row["events_error"]) == (0, 0, "")


def _deliver_dead(cfg: Path, env: dict[str, str]) -> int:
    """One ``ingest events deliver``; how many events are dead-lettered after it."""
    result = run_cli(cfg, "events", "deliver", env=env)
    for record in _logs(result.stderr):
        if record["event"] == "event.dead_lettered":
            assert record["attempts"] == 2 and "HTTP 500" in record["error"]
    return int(_status(cfg, env)["events_dead"])


def test_webhook_tls_is_verified_and_a_missing_secret_holds_events_back(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str, webhook: WebhookServer,
) -> None:  # fmt: skip
    """A certificate from an untrusted CA fails the attempt (nothing is sent), and a sink
    whose secret is missing sends nothing; both show in status, the events stay pending."""
    _deliver(mail_user, dovecot, 1)
    untrusted = {**_hook_sink(webhook, tmp_path), "name": "untrusted"}
    del untrusted["ca_file"]
    unsigned = {**_hook_sink(webhook, tmp_path), "name": "unsigned", "secret_env": "NO_SUCH"}
    cfg, env = _config(
        tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, [untrusted, unsigned]
    )
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    result = run_cli(cfg, "events", "deliver", env=env)
    assert result.returncode == 1 and webhook.received == [] and webhook.refused == 0
    (unusable,) = [r for r in _logs(result.stderr) if r["event"] == "event.sink_unusable"]
    assert "environment variable NO_SUCH is not set" in unusable["error"]
    row = _status(cfg, env)
    assert row["events_pending"] == 2
    assert "untrusted: ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED]" in row["events_error"]
    assert "unsigned: " in row["events_error"] and webhook.url not in row["events_error"]


def test_check_probes_each_sink_without_sending_an_event(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str, webhook: WebhookServer,
) -> None:  # fmt: skip
    """`ingest check` reaches every distinct sink once and sends nothing: the webhook over
    TLS with its CA, the stream's key; it names a sink whose CA does not match, whose
    secret is missing or whose key is not a stream, and never prints the URL's token."""
    redis.Redis.from_url(redis_url).set("test:not-a-stream", "x")
    other_ca = make_server_tls(tmp_path / "other-tls").ca_file
    url = webhook.url + "?token=tok-in-url-7f3a"
    hook = {**_hook_sink(webhook, tmp_path), "url": url, "name": "hook"}
    sinks = [
        hook,
        {**hook, "name": "wrong-ca", "ca_file": str(other_ca)},
        {**hook, "name": "no-secret", "secret_env": "NO_SUCH_SECRET_ENV"},
        {"type": "redis_stream", "name": "stream", "stream": STREAM, "url": redis_url},
        {"type": "redis_stream", "name": "wrong-type", "stream": "test:not-a-stream"},
        {"type": "celery", "task": "downstream.handle"},
    ]
    own = account_entry(dovecot, mail_user, name="own", events=[hook])  # same sink: once
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3_server, bucket=bucket, prefix="ev",
        accounts=[account_entry(dovecot, mail_user), own], events=sinks,
    )  # fmt: skip
    env = {password_env(a): mail_user.password for a in ("support", "own")}
    result = run_cli(cfg, "check", env={**env, "HOOK_SECRET": SECRET})
    out = result.stdout + result.stderr
    lines = {line.split("events(")[1].split(")")[0]: line for line in
             result.stdout.splitlines() if "  sink " in line}  # fmt: skip
    assert result.returncode == 1, out[-3000:]
    assert sorted(lines) == ["celery", "hook", "no-secret", "stream", "wrong-ca", "wrong-type"]
    assert lines["hook"].startswith("ok") and "reachable over HTTPS" in lines["hook"]
    assert lines["wrong-ca"].startswith("FAIL") and "CERTIFICATE_VERIFY_FAILED" in lines["wrong-ca"]
    assert lines["no-secret"].startswith("FAIL")
    assert "events(no-secret).secret_env: environment variable NO_SUCH_SECRET_ENV" in out
    assert lines["stream"].startswith("ok") and f"stream {STREAM}" in lines["stream"]
    assert lines["wrong-type"].startswith("FAIL") and "not a stream" in lines["wrong-type"]
    assert lines["celery"].startswith("ok")
    assert webhook.received == [] and webhook.refused == 0
    assert "tok-in-url-7f3a" not in out and SECRET not in out
