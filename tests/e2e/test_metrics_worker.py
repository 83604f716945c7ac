"""The worker's own endpoint: a real celery worker (prefork) and beat, scraped over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import (
    account_entry,
    http_get,
    metric_samples,
    password_env,
    run_cli,
    wait_until,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, as_pop3, corpus_files, free_port
from harness.celery_procs import CeleryProcess

pytestmark = pytest.mark.e2e


def ingested(text: str, account: str) -> float:
    key = ("ingest_messages_ingested_total", frozenset({("account", account)}))
    return metric_samples(text).get(key, 0.0)


def test_the_worker_serves_what_its_pool_processes_counted(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """Polls run in pool children; the main process's /metrics adds them up, /readyz is ready."""
    raws = [p.read_bytes() for p in corpus_files()[:5]]
    for raw in raws:
        dovecot.deliver(mail_user.name, raw)
    port = free_port()
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, mail_user, interval=2)],
        dispatch_interval=1,
        metrics={"address": "127.0.0.1", "port": port},
    )
    prom = tmp_path / "prom"  # an operator-chosen directory, with a stale file from a past run
    prom.mkdir()
    (prom / "counter_999999.db").write_bytes(b"stale")
    env = {password_env("support"): mail_user.password, "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    worker = CeleryProcess("worker", cfg, tmp_path / "worker.log", "--concurrency", "2", env=env)
    beat = CeleryProcess("beat", cfg, tmp_path / "beat.log", env=env)
    logs = [worker.log_path, beat.log_path]
    base = f"http://127.0.0.1:{port}"
    with worker, beat:
        wait_until(
            lambda: ingested(http_get(base + "/metrics")[1], "support") == len(raws), 90, logs
        )
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 30, logs)
        status, body = http_get(base + "/healthz")
        text = http_get(base + "/metrics")[1]
        probes = run_cli(cfg, "health", "--json", env=env)  # --live asks this worker
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert probes.returncode == 0, probes.stdout
    assert {c["name"] for c in json.loads(probes.stdout)["checks"]} == {
        "loop",
        "redis",
        "storage",
        "scheduler",
    }
    assert dovecot.message_count(mail_user.name) == 0
    size = float(sum(len(as_pop3(r)) for r in raws))
    assert f'ingest_bytes_ingested_total{{account="support"}} {size}' in text
    assert 'ingest_health_check_ok{check="scheduler"} 1.0' in text
    files = {p.name for p in prom.iterdir()}
    assert "counter_999999.db" not in files  # emptied at start
    assert f"histogram_{worker.pid}.db" in files  # the main process's own requests count too
    assert "Traceback" not in worker.log_path.read_text()
