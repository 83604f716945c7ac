"""`ingest status` and `ingest accounts`: what an operator sees, with no secret in it."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from support import account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser
from ingest import keys
from ingest.status import account_statuses


def test_status_shows_the_last_poll_and_accounts_shows_config_without_secrets(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """After a poll, status reports its outcome and counts; accounts names no password."""
    dovecot.deliver(mail_user.name, b"Subject: one\n\nx\n")
    dovecot.deliver(mail_user.name, b"Subject: two\n\ny\n")
    accounts = [account_entry(dovecot, mail_user), account_entry(dovecot, mail_user, name="idle")]
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, directory=tmp_path / "s", accounts=accounts
    )
    env = {password_env("support"): mail_user.password, password_env("idle"): mail_user.password}
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0

    result = run_cli(cfg, "status", "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["account"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["support"]["outcome"] == "ok" and rows["support"]["stored"] == 2
    assert rows["support"]["deleted"] == 2 and rows["support"]["lock_holder"] is None
    assert rows["support"]["stored_today"] == 2 and rows["support"]["backlog"] == 0
    assert rows["idle"]["outcome"] == "never polled"

    table = run_cli(cfg, "status", env=env)
    assert "support" in table.stdout and "ok" in table.stdout
    assert "stored today" in table.stdout and "backlog" in table.stdout

    shown = run_cli(cfg, "accounts", "--json", env=env)
    config = json.loads(shown.stdout)
    assert [a["name"] for a in config["accounts"]] == ["support", "idle"]
    assert config["accounts"][0]["password_env"] == password_env("support")
    assert mail_user.password not in shown.stdout + run_cli(cfg, "accounts", env=env).stdout


def test_backlog_and_stored_today_come_from_the_polls_records(redis_url: str) -> None:
    """Backlog counts what the last poll listed but neither stored nor left on purpose;
    stored today is the day's counter, whatever the last poll did."""
    client = redis.Redis.from_url(redis_url)
    last = {"outcome": "failed", "listed": 10, "stored": 3, "already_stored": 2, "oversize": 1}
    client.hset(keys.last_poll_key("a"), mapping={k: json.dumps(v) for k, v in last.items()})
    client.set(keys.stored_day_key("a", "2030-01-02"), 42)
    client.set(keys.stored_day_key("a", "2030-01-01"), 7)
    (row,) = account_statuses(client, ["a"], day="2030-01-02")
    assert (row.backlog, row.stored_today, row.outcome) == (4, 42, "failed")
