"""The container entrypoint, run directly: `ingest check` on real services, then the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import ROOT, account_entry, password_env, write_config

from harness import Dovecot, MailUser, MotoS3, free_port

ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"


def _run(config: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    """The entrypoint as the image runs it: `ingest` on PATH, INGEST_CONFIG set."""
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    full = {**os.environ, **env, "PATH": path, "INGEST_CONFIG": str(config)}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command],
        capture_output=True,
        text=True,
        env={**full, "INGEST_CHECK_DELAY": "0"},
        cwd=ROOT,
        timeout=180,
        check=False,
    )


def test_the_entrypoint_checks_the_services_then_runs_the_command(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """With Redis, S3 and the POP3 account reachable, every check passes and the command runs."""
    config = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, mail_user)],
    )
    env = {password_env("support"): mail_user.password}
    result = _run(config, env, "sh", "-c", "echo command ran as $0", "the-command")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "command ran as the-command"
    checks = lines[:-1]
    assert len(checks) == 4 and all(line.startswith("ok") for line in checks)
    assert any("account support" in line and "logged in" in line for line in checks)


def test_the_entrypoint_stops_clearly_when_a_service_is_down(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str
) -> None:
    """Redis down: the check fails, is retried as configured, and the command never starts."""
    config = write_config(
        tmp_path / "c.yaml",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, mail_user)],
    )
    env = {password_env("support"): mail_user.password, "INGEST_CHECK_ATTEMPTS": "2"}
    result = _run(config, env, "echo", "command ran")
    assert result.returncode == 1
    assert "command ran" not in result.stdout
    assert result.stdout.count("FAIL  redis") == 2  # tried twice
    assert "entrypoint: ingest check failed (exit 1, attempt 1 of 2); retrying" in result.stderr
    assert (
        "entrypoint: ingest check failed (exit 1, attempt 2 of 2); not starting: echo command ran"
        in result.stderr
    )


def test_a_config_error_is_not_retried(tmp_path: Path) -> None:
    """A broken config exits 78 at once, with the config problem named, whatever the attempts."""
    config = tmp_path / "c.yaml"
    config.write_text("storage: {url: 'ftp://nowhere'}\n")
    result = _run(config, {"INGEST_CHECK_ATTEMPTS": "5"}, "echo", "command ran")
    assert result.returncode == 78 and "command ran" not in result.stdout
    assert result.stderr.count("config error:") == 1
    assert f"config error: {config}: storage: expected s3://BUCKET" in result.stderr
    assert "attempt 1 of 5); not starting" in result.stderr
