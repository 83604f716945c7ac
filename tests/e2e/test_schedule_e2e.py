"""Through Celery: an account that keeps failing is backed off, one success resets it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from support import account_entry, wait_until, write_config

from harness import Dovecot, MotoS3, corpus_files
from harness.celery_procs import CeleryProcess
from ingest import keys

pytestmark = pytest.mark.e2e


def _backoffs(log: Path) -> list[float]:
    """The ``next_in_seconds`` of every ``poll.backed_off`` event in a worker's JSON log."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if '"poll.backed_off"' in line:
            found.append(float(json.loads(line[line.index("{") :])["next_in_seconds"]))
    return found


def test_refused_logins_back_off_exponentially_and_a_success_resets(
    tmp_path: Path, dovecot: Dovecot, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """Each refused login doubles the wait before the next poll (1 s, 2 s, 4 s, +<=25%
    jitter); once the password is right the mailbox is drained and the count is gone."""
    user = dovecot.add_user(f"backoff{time.time_ns() % 10**8}", "right-pw-x7")
    dovecot.deliver(user.name, corpus_files()[0].read_bytes())
    secret = tmp_path / "pw"
    secret.write_text("wrong-pw")
    entry = account_entry(dovecot, user, name="flaky", interval=1)
    del entry["password_env"]
    entry["password_file"] = str(secret)
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3_server, bucket=bucket,
        accounts=[entry], dispatch_interval=0.3,
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    worker = CeleryProcess("worker", cfg, tmp_path / "worker.log", "--concurrency", "1")
    beat = CeleryProcess("beat", cfg, tmp_path / "beat.log")
    logs = [worker.log_path, beat.log_path]
    with worker, beat:
        wait_until(lambda: len(_backoffs(worker.log_path)) >= 3, 60, logs)
        secret.write_text("right-pw-x7")
        wait_until(lambda: dovecot.message_count(user.name) == 0, 60, logs)
        wait_until(lambda: client.hget(keys.FAILURES_KEY, "flaky") is None, 10, logs)
    delays = _backoffs(worker.log_path)
    for base, delay in zip([1, 2, 4], delays, strict=False):
        assert base <= delay <= base * 1.25
