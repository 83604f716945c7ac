"""Metrics and health against real servers: Dovecot, Redis, moto S3, `ingest poll` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from support import (
    ROOT,
    account_entry,
    bucket_objects,
    http_get,
    metric_samples,
    password_env,
    run_cli,
    wait_until,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, RedisServer, as_pop3, corpus_files, free_port
from harness.ports import accepts_connections
from harness.process import spawn, stop_process
from ingest import health, metrics
from ingest.checks import startup_problems
from ingest.config import StorageConfig
from ingest.config_load import load_settings
from ingest.interfaces import Put
from ingest.metrics_http import start_server
from ingest.spool import Spool
from ingest.store_s3 import S3Store

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def deliver(dovecot: Dovecot, user: MailUser, count: int, skip: int = 0) -> list[bytes]:
    """Deliver ``count`` corpus messages; returns them as POP3 will hand them out."""
    raws = [p.read_bytes() for p in corpus_files()[skip : skip + count]]
    for raw in raws:
        dovecot.deliver(user.name, raw)
    return [as_pop3(r) for r in raws]


@pytest.fixture
def mp_dir(tmp_path: Path) -> Path:
    """An empty PROMETHEUS_MULTIPROC_DIR shared by the processes of one test."""
    path = tmp_path / "prom"
    path.mkdir()
    return path


@pytest.fixture
def serve(tmp_path: Path, mp_dir: Path) -> Iterator[Callable[[Path], str]]:
    """Start `ingest metrics serve` (a real process reading ``mp_dir``); returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(cfg: Path) -> str:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "ingest", "--config", str(cfg), "metrics", "serve"]
        procs.append(spawn([*argv, "--port", str(port)], log, env=env))
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: accepts_connections("127.0.0.1", port), 30, [log])
        return base

    yield start
    for proc in procs:
        stop_process(proc)


def poll_env(mp_dir: Path, **passwords: str) -> dict[str, str]:
    """Environment of an `ingest poll` that writes its metrics into ``mp_dir``."""
    env = {password_env(name): pw for name, pw in passwords.items()}
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}


def s3_config(
    tmp_path: Path, redis_url: str, s3: MotoS3, bucket: str, *accounts: dict[str, object]
) -> Path:
    return write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3, bucket=bucket, accounts=list(accounts)
    )


def test_a_poll_shows_on_the_served_endpoint_with_exact_counts(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
    mp_dir: Path,
    serve: Callable[[Path], str],
) -> None:
    """After one `ingest poll`, /metrics shows its messages, bytes, poll, latencies and success."""
    expected = deliver(dovecot, mail_user, 3)
    idle = account_entry(dovecot, mail_user, name="idle", interval=30)  # never polled
    cfg = s3_config(tmp_path, redis_url, s3_server, bucket, account_entry(dovecot, mail_user), idle)
    polled = run_cli(cfg, "poll", "support", env=poll_env(mp_dir, support=mail_user.password))
    assert polled.returncode == 0, polled.stderr[-2000:]
    status, text = http_get(serve(cfg) + "/metrics")
    assert status == 200
    got = metric_samples(text)
    assert value(got, "ingest_messages_ingested_total", account="support") == 3
    assert value(got, "ingest_bytes_ingested_total", account="support") == sum(map(len, expected))
    assert value(got, "ingest_polls_total", account="support", outcome="ok") == 1
    assert value(got, "ingest_polls_total", account="support", outcome="failed") is None
    assert value(got, "ingest_poll_duration_seconds_count", account="support") == 1
    assert value(got, "ingest_messages_on_server", account="support") == 0
    assert value(got, "ingest_quarantined_messages", account="support") == 0
    assert value(got, "ingest_pop3_request_seconds_count", operation="retr") == 3
    assert value(got, "ingest_pop3_request_seconds_count", operation="connect") == 1
    objects = bucket_objects(s3_server, bucket)  # raw + JSON + attachments, each put once
    assert len([k for k in objects if "/raw/" in k]) == 3
    assert value(got, "ingest_storage_request_seconds_count", operation="put") == len(objects)
    assert value(got, "ingest_storage_errors_total", operation="put") is None
    assert (value(got, "ingest_last_success_timestamp_seconds", account="support") or 0) > 0
    assert value(got, "ingest_account_poll_interval_seconds", account="support") == 60
    assert value(got, "ingest_account_poll_interval_seconds", account="idle") == 30
    assert value(got, "ingest_last_success_timestamp_seconds", account="idle") is None
    assert value(got, "ingest_polls_total", account="idle", outcome="ok") is None


def test_keep_mode_reports_the_messages_left_on_the_server(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
    mp_dir: Path,
) -> None:
    """With delete: never, every listed message is counted as left on the server."""
    deliver(dovecot, mail_user, 4)
    entry = account_entry(dovecot, mail_user, delete="never")
    cfg = s3_config(tmp_path, redis_url, s3_server, bucket, entry)
    polled = run_cli(cfg, "poll", "support", env=poll_env(mp_dir, support=mail_user.password))
    assert polled.returncode == 0, polled.stderr[-2000:]
    got = metric_samples(scrape_dir(mp_dir))
    assert value(got, "ingest_messages_on_server", account="support") == 4
    assert value(got, "ingest_messages_ingested_total", account="support") == 4


def scrape_dir(mp_dir: Path) -> str:
    """What a multiprocess collector reads from ``mp_dir`` (in this test process)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(metrics.MULTIPROC_ENV, str(mp_dir))
        return metrics.scrape().decode()


def test_a_wrong_password_counts_an_auth_failure_and_a_failed_poll(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
    mp_dir: Path,
    serve: Callable[[Path], str],
) -> None:
    """A refused login shows as ingest_auth_failures_total and polls{outcome="failed"}."""
    deliver(dovecot, mail_user, 1)
    cfg = s3_config(tmp_path, redis_url, s3_server, bucket, account_entry(dovecot, mail_user))
    env = poll_env(mp_dir, support=mail_user.password + "-wrong")
    for _ in range(2):
        assert run_cli(cfg, "poll", "support", env=env).returncode == 1
    got = metric_samples(http_get(serve(cfg) + "/metrics")[1])
    assert value(got, "ingest_auth_failures_total", account="support") == 2
    assert value(got, "ingest_polls_total", account="support", outcome="failed") == 2
    assert value(got, "ingest_messages_ingested_total", account="support") is None
    assert value(got, "ingest_last_success_timestamp_seconds", account="support") == 0


def test_storage_down_shows_in_readiness_and_in_storage_errors(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    redis_url: str,
    mp_dir: Path,
    serve: Callable[[Path], str],
) -> None:
    """With S3 unreachable, `ingest health --ready` fails on storage and puts count as errors."""
    deliver(dovecot, mail_user, 1)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            {
                "redis_url": redis_url,
                "storage": {"url": "s3://nowhere", "endpoint_url": dead, "max_attempts": 1},
                "accounts": [account_entry(dovecot, mail_user)],
            }
        )
    )
    env = poll_env(mp_dir, support=mail_user.password)
    assert run_cli(cfg, "poll", "support", env=env).returncode == 1
    ready = run_cli(cfg, "health", "--ready", "--json", env=env)
    assert ready.returncode == 1
    checks = {c["name"]: c["ok"] for c in json.loads(ready.stdout)["checks"]}
    assert checks["storage"] is False and checks["redis"] is True
    base = serve(cfg)
    status, body = http_get(base + "/readyz")
    assert status == 503 and json.loads(body)["status"] == "fail"
    got = metric_samples(http_get(base + "/metrics")[1])
    assert (value(got, "ingest_storage_errors_total", operation="put") or 0) >= 1
    assert value(got, "ingest_health_check_ok", check="storage") == 0
    assert value(got, "ingest_polls_total", account="support", outcome="failed") == 1


def test_two_processes_counts_add_up(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
    mp_dir: Path,
) -> None:
    """Two `ingest poll` processes of one account write separate files whose counts add up."""
    deliver(dovecot, mail_user, 2)
    cfg = s3_config(tmp_path, redis_url, s3_server, bucket, account_entry(dovecot, mail_user))
    env = poll_env(mp_dir, support=mail_user.password)
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    deliver(dovecot, mail_user, 3, skip=2)
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    assert len(list(mp_dir.glob("counter_*.db"))) == 2  # one file per process
    got = metric_samples(scrape_dir(mp_dir))
    assert value(got, "ingest_messages_ingested_total", account="support") == 5
    assert value(got, "ingest_polls_total", account="support", outcome="ok") == 2


def test_readyz_is_ready_with_everything_up_and_not_when_redis_stops(
    tmp_path: Path, s3_server: MotoS3, bucket: str
) -> None:
    """/readyz answers 200 once Redis, S3 and the dispatcher are fine, 503 once Redis stops."""
    with RedisServer(tmp_path / "redis") as private:
        cfg = write_config(
            tmp_path / "c.yaml", redis_url=private.url, s3=s3_server, bucket=bucket, accounts=[]
        )
        settings = load_settings(cfg)
        probe = health.Probe(settings)
        assert probe.check_storage().ok is False  # no probe object before a worker start
        assert startup_problems(settings) == []  # what a worker start does: writes it
        health.record_tick(probe.redis)
        health.touch()
        server = start_server(settings, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            status, body = http_get(base + "/readyz")
            assert status == 200, body
            assert {c["name"] for c in json.loads(body)["checks"]} == {
                "redis",
                "storage",
                "scheduler",
            }
            assert http_get(base + "/healthz")[0] == 200
            private.stop()
            status, body = http_get(base + "/readyz")
            failed = {c["name"] for c in json.loads(body)["checks"] if not c["ok"]}
            assert status == 503 and failed == {"redis", "scheduler"}
            assert http_get(base + "/healthz")[0] == 200  # alive, just not ready
        finally:
            server.shutdown()


def test_readiness_fails_when_the_dispatcher_stopped_ticking(
    tmp_path: Path, redis_url: str
) -> None:
    """A dispatcher tick older than stale_ticks x dispatch_interval makes the scheduler unready."""
    store = tmp_path / "store"
    store.mkdir()
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[], dispatch_interval=5
    )
    probe = health.Probe(load_settings(cfg))
    assert probe.check_scheduler().ok is False  # never ticked
    health.record_tick(probe.redis, now=1_000.0)
    assert probe.check_scheduler().ok is False
    health.record_tick(probe.redis)
    assert [c.ok for c in probe.ready()] == [True, True, True]


def test_a_create_only_refusal_is_timed_but_not_counted_as_a_storage_error(
    s3_server: MotoS3, bucket: str
) -> None:
    """S3 answering 412 to a create-only put is expected: timed as put + head, not an error."""
    store = S3Store(StorageConfig(url=f"s3://{bucket}", endpoint_url=s3_server.endpoint_url))
    before = s3_counts()
    body = Spool.of(b"Subject: x\r\n\r\nhello\r\n")
    assert store.put("k/1", body, "message/rfc822") is Put.CREATED
    assert store.put("k/1", body, "message/rfc822") is Put.EXISTED
    after = s3_counts()
    assert {k: after[k] - before[k] for k in before} == {
        ("ingest_storage_request_seconds_count", "put"): 2,
        ("ingest_storage_request_seconds_count", "head"): 1,
        ("ingest_storage_errors_total", "put"): 0,
        ("ingest_storage_errors_total", "head"): 0,
    }


def s3_counts() -> dict[tuple[str, str], float]:
    """This process's storage request and error counts for put and head."""
    names = ("ingest_storage_request_seconds_count", "ingest_storage_errors_total")
    return {
        (name, op): REGISTRY.get_sample_value(name, {"operation": op}) or 0.0
        for name in names
        for op in ("put", "head")
    }


def test_health_cli_without_an_endpoint_fails_liveness_and_passes_readiness(
    tmp_path: Path, redis_url: str
) -> None:
    """`ingest health --live` fails when metrics.port is 0; `--ready` passes with all up."""
    store = tmp_path / "store"
    store.mkdir()
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[], metrics={"port": 0}
    )
    health.record_tick(health.Probe(load_settings(cfg)).redis)
    live = run_cli(cfg, "health", "--live")
    assert live.returncode == 1 and "metrics.port is 0" in live.stdout
    ready = run_cli(cfg, "health", "--ready")
    assert ready.returncode == 0, ready.stdout
    assert [line.split()[0] for line in ready.stdout.splitlines()] == ["ok"] * 3
