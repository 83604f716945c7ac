"""Killed Celery workers, a restarted Redis, and concurrent polls of one mailbox."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import redis
from support import (
    ROOT,
    account_entry,
    assert_stored_exactly_once,
    password_env,
    wait_until,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, RedisServer, as_pop3, corpus_files
from harness.celery_procs import CeleryProcess
from harness.process import log_tail
from ingest.config_load import load_settings
from ingest.errors import TransientError
from ingest.interfaces import BlobStore, Put
from ingest.service import poll_account
from ingest.spool import Spool
from ingest.store import open_store


def _deliver(dovecot: Dovecot, user: MailUser, files: list[Path]) -> set[bytes]:
    for path in files:
        dovecot.deliver(user.name, path.read_bytes())
    return {as_pop3(p.read_bytes()) for p in files}


@pytest.mark.e2e
def test_worker_killed_mid_poll_is_recovered_and_stored_exactly_once(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """A Celery pool process SIGKILLed after a raw PUT: the poll is redone, nothing doubles."""
    expected = _deliver(dovecot, mail_user, corpus_files()[60:72])
    marker = tmp_path / "killed"
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, mail_user, interval=2)],
        lock_ttl=2,
        dispatch_interval=1,
    )
    env = {
        password_env("support"): mail_user.password,
        "INGEST_FAILPOINT": f"after_raw_put:4@{marker}",
    }
    worker = CeleryProcess("worker", cfg, tmp_path / "worker.log", "--concurrency", "1", env=env)
    beat = CeleryProcess("beat", cfg, tmp_path / "beat.log", env=env)
    with worker, beat:
        wait_until(lambda: dovecot.message_count(mail_user.name) == 0, 60, [worker.log_path])
    assert marker.exists()
    assert "WorkerLostError" in worker.log_path.read_text() or "SIGKILL" in (
        worker.log_path.read_text()
    )
    assert_stored_exactly_once(s3_server, bucket, expected)


class _RestartRedisAfter:
    """A store that restarts Redis (losing every key) after its N-th write."""

    def __init__(self, inner: BlobStore, server: RedisServer, after: int) -> None:
        self.inner, self.server, self.after, self.calls = inner, server, after, 0

    def put(self, key: str, body: Spool, content_type: str, *, must_match: bool = True) -> Put:
        result = self.inner.put(key, body, content_type, must_match=must_match)
        self.calls += 1
        if self.calls == self.after:
            self.server.restart()
        return result

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def describe(self) -> str:
        return "restarting"


def test_redis_restart_mid_poll_loses_nothing_and_doubles_nothing(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_server: RedisServer,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis restarts empty in the middle of a poll: the poll stops, the next one completes."""
    expected = _deliver(dovecot, mail_user, corpus_files()[80:88])
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, mail_user)],
    )
    monkeypatch.setenv(password_env("support"), mail_user.password)
    settings = load_settings(cfg)
    store = _RestartRedisAfter(open_store(settings.storage), redis_server, after=5)
    with pytest.raises(TransientError):
        poll_account(settings, "support", store=store)
    assert dovecot.message_count(mail_user.name) == 8
    report = poll_account(settings, "support")
    assert report.outcome == "ok"
    assert report.already_stored >= 2  # written before the restart, found again by content
    assert_stored_exactly_once(s3_server, bucket, expected)
    assert dovecot.message_count(mail_user.name) == 0


def test_concurrent_polls_of_one_mailbox_store_each_message_once(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """Three `ingest poll` processes started together: one works, the others see the lock."""
    expected = _deliver(dovecot, mail_user, corpus_files()[:40])
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, mail_user)],
    )
    env = {**os.environ, password_env("support"): mail_user.password}
    argv = [sys.executable, "-m", "ingest", "--config", str(cfg), "poll", "support"]
    procs = [
        subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    codes = sorted(p.wait(120) for p in procs)
    assert codes[0] == 0 and set(codes) <= {0, 75}
    assert_stored_exactly_once(s3_server, bucket, expected)
    assert dovecot.message_count(mail_user.name) == 0


@pytest.mark.e2e
def test_two_beats_never_double_dispatch(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """Two beats at once: each due slot is claimed once, so claims stay an interval apart."""
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, mail_user, interval=2)],
        dispatch_interval=0.5,
    )
    env = {password_env("support"): mail_user.password}
    worker = CeleryProcess("worker", cfg, tmp_path / "w.log", "--concurrency", "2", env=env)
    beats = [CeleryProcess("beat", cfg, tmp_path / f"b{i}.log", env=env) for i in (1, 2)]

    def enqueued() -> int:
        return worker.log_path.read_text().count('"dispatch.enqueued"')

    with worker, beats[0], beats[1]:  # the first claim comes within an interval (its phase)
        wait_until(lambda: enqueued() >= 3, 60, [worker.log_path])
    log = worker.log_path.read_text()
    claims = [  # when a dispatcher enqueued the account: the claim is atomic in Redis
        datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
        for line in log.splitlines()
        if '"dispatch.enqueued"' in line
    ]
    assert len(claims) >= 2, log_tail(worker.log_path, 60)
    gaps = [b - a for a, b in itertools.pairwise(claims)]
    assert min(gaps) > 1.0, gaps  # each claim pushes the next due time 2 s ahead
    assert "poll.skipped_locked" not in log
    client = redis.Redis.from_url(redis_url)
    assert client.hget("ingest:{support}:last", "outcome") == b'"ok"'
