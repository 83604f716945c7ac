"""Start-up refusals: an evicting Redis stops `ingest check` and the Celery worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis
from support import ROOT, account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser


def test_evicting_redis_is_refused_by_check_and_by_the_worker(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """maxmemory-policy allkeys-lru could drop ledger or broker keys: the worker will not start."""
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=tmp_path / "s",
        accounts=[account_entry(dovecot, mail_user)],
    )
    env = {password_env("support"): mail_user.password}
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        check = run_cli(cfg, "check", env=env)
        assert check.returncode == 1
        assert any(
            line.startswith("FAIL") and "allkeys-lru" in line for line in check.stdout.splitlines()
        )
        worker = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool", "solo"],
            env={**env, "INGEST_CONFIG": str(cfg), "PATH": "/usr/bin:/bin"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert worker.returncode != 0
        assert "refusing to start" in worker.stderr and "noeviction" in worker.stderr
    finally:
        client.config_set("maxmemory-policy", "noeviction")
