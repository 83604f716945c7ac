"""Accounts added to and removed from accounts_dir while a real worker and beat run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
import yaml
from support import account_entry, bucket_objects, password_env, wait_until, write_config

from harness import Dovecot, MotoS3
from harness.celery_procs import CeleryProcess
from ingest import keys

pytestmark = pytest.mark.e2e


def _scheduled(redis_url: str) -> set[str]:
    with redis.Redis.from_url(redis_url) as client:
        return {n.decode() for n in client.zrange(keys.SCHEDULE_KEY, 0, -1)}


def test_accounts_dir_changes_reach_running_workers_without_restart(
    tmp_path: Path, dovecot: Dovecot, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """A broken file is logged and ignored, a new file's mailbox gets ingested, a removed
    file's account leaves the schedule, all while the same worker and beat keep running."""
    tag = time.time_ns() % 10**8
    first, added = (dovecot.add_user(f"rl{i}{tag}", f"pw-{i}-{tag}") for i in (1, 2))
    accounts_dir = tmp_path / "accounts.d"
    accounts_dir.mkdir()
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, first, name="first", interval=1)],
        accounts_dir=str(accounts_dir),
        dispatch_interval=1,
    )
    env = {password_env("first"): first.password, password_env("added"): added.password}
    worker = CeleryProcess("worker", cfg, tmp_path / "worker.log", "--concurrency", "2", env=env)
    beat = CeleryProcess("beat", cfg, tmp_path / "beat.log", env=env)
    logs = [worker.log_path, beat.log_path]

    def stored_under(account: str) -> int:
        return sum(f"{account}/raw/" in k for k in bucket_objects(s3_server, bucket))

    with worker, beat:
        dovecot.deliver(first.name, b"Subject: before\r\n\r\nx\r\n")
        wait_until(lambda: stored_under("first") == 1, 60, logs)

        broken = accounts_dir / "broken.yaml"
        broken.write_text(yaml.safe_dump({"name": "broken", "host": "h", "username": "u"}))
        wait_until(lambda: "config.reload_failed" in worker.log_path.read_text(), 60, logs)
        failed = next(
            line for line in worker.log_path.read_text().splitlines() if "reload_failed" in line
        )
        assert str(broken) in failed and "password_env or password_file" in failed
        dovecot.deliver(first.name, b"Subject: while broken\r\n\r\ny\r\n")
        wait_until(lambda: stored_under("first") == 2, 60, logs)  # the old config stays

        broken.unlink()
        entry = account_entry(dovecot, added, name="added", interval=1)
        dovecot.deliver(added.name, b"Subject: new account\r\n\r\nz\r\n")
        (accounts_dir / "added.yaml").write_text(yaml.safe_dump(entry))
        wait_until(lambda: stored_under("added") == 1, 60, logs)
        wait_until(lambda: dovecot.message_count(added.name) == 0, 30, logs)
        assert _scheduled(redis_url) == {"first", "added"}

        (accounts_dir / "added.yaml").unlink()
        wait_until(lambda: _scheduled(redis_url) == {"first"}, 60, logs)
    assert "Traceback" not in worker.log_path.read_text()
