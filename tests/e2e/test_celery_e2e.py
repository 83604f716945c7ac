"""End to end through Celery: beat dispatches, real worker processes poll, S3 receives."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest
import redis
from support import (
    account_entry,
    bucket_objects,
    password_env,
    split_objects,
    wait_until,
    write_config,
)

from harness import Dovecot, MotoS3, as_pop3, corpus_files
from harness.celery_procs import CeleryProcess

pytestmark = pytest.mark.e2e


class Monitor:
    """Every command Redis receives (broker traffic included), captured with MONITOR."""

    def __init__(self, url: str) -> None:
        self.commands: list[str] = []
        self._client = redis.Redis.from_url(url, socket_timeout=None)
        self._mon = self._client.monitor().__enter__()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.commands.append(self._mon.next_command()["command"])
            except redis.TimeoutError:
                continue  # a quiet moment on the broker, not the end of the capture
            except (redis.RedisError, OSError, ValueError):
                return

    def close(self) -> None:
        self._mon.connection.disconnect()
        self._client.close()


def _task_bodies(commands: list[str]) -> list[str]:
    """The decoded bodies of the task messages pushed onto the broker's queues."""
    bodies = []
    for command in commands:
        if command.startswith("LPUSH ingest "):
            envelope = json.loads(command.removeprefix("LPUSH ingest "))
            bodies.append(base64.b64decode(envelope["body"]).decode())
    return bodies


def test_beat_and_workers_drain_two_accounts_without_secrets_in_the_broker(
    tmp_path: Path, dovecot: Dovecot, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """Beat enqueues due accounts, workers store every message once, no password crosses Redis."""
    users = [
        dovecot.add_user(f"e2e{i}{time.time_ns() % 10**8}", f"pw-canary-{i}-x9") for i in (1, 2)
    ]
    files = corpus_files()[:30]
    expected = set()
    for i, path in enumerate(files):
        dovecot.deliver(users[i % 2].name, path.read_bytes())
        expected.add(as_pop3(path.read_bytes()))
    accounts = [account_entry(dovecot, u, name=f"acct{i}", interval=2) for i, u in enumerate(users)]
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=accounts,
        dispatch_interval=1,
    )
    env = {password_env(a["name"]): u.password for a, u in zip(accounts, users, strict=True)}
    monitor = Monitor(redis_url)
    worker = CeleryProcess("worker", cfg, tmp_path / "worker.log", "--concurrency", "2", env=env)
    beat = CeleryProcess("beat", cfg, tmp_path / "beat.log", env=env)
    logs = [worker.log_path, beat.log_path]
    try:
        with worker, beat:
            wait_until(lambda: all(dovecot.message_count(u.name) == 0 for u in users), 90, logs)
            raws, _ = split_objects(bucket_objects(s3_server, bucket))
            wait_until(
                lambda: len(split_objects(bucket_objects(s3_server, bucket))[0]) == len(expected),
                10,
                logs,
            )
            time.sleep(3)  # let a few more dispatch ticks run: they must add nothing
    finally:
        monitor.close()
    raws, docs = split_objects(bucket_objects(s3_server, bucket))
    assert set(raws.values()) == expected and len(docs) == len(raws)
    bodies = _task_bodies(monitor.commands)
    assert any("acct0" in b for b in bodies) and any("acct1" in b for b in bodies)
    traffic = "\n".join(monitor.commands + bodies)
    for user in users:
        assert user.password not in traffic
    assert "Traceback" not in worker.log_path.read_text()
